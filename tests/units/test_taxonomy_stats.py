"""TaxonomyStats against brute force on small batches, and its merge / state invariants."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats import SiteBatch
from neuronatlas.units import TAXONOMY_COLUMNS, TaxonomyStats

VOCAB = 40


def token_batches(n_batches, *, n_units=7, rows=4, n_pos=12, seed=0, nonfinite=False):
    """Right-padded token batches; unit 0 detects token 3 (exact ties), unit 1 has many ties,
    unit 2 is positional, unit 3 has a massive value at position 0, the rest are Gaussian."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_batches):
        tok = rng.integers(0, VOCAB, size=(rows, n_pos))
        x = rng.standard_normal((rows, n_pos, n_units)).astype(np.float32)
        pos = np.broadcast_to(np.arange(n_pos), (rows, n_pos)).copy()
        x[..., 0] = (tok == 3) * 2.0
        x[..., 1] = np.round(x[..., 1])
        x[..., 2] = (pos < 3) * 5.0 + 0.1 * x[..., 2]
        x[..., 3] = 0.1 * x[..., 3]
        x[:, 0, 3] = 150.0
        lengths = rng.integers(1, n_pos + 1, size=rows)
        mask = np.arange(n_pos)[None, :] < lengths[:, None]
        if nonfinite:
            for value in (np.nan, np.inf, -np.inf):
                r, c = rng.integers(0, rows), rng.integers(0, n_pos)
                if mask[r, c]:
                    x[r, c, n_units - 1] = value
            x[~mask] = 1e6  # padding must never be read
        doc = np.broadcast_to(np.arange(rows)[:, None] + i * rows, (rows, n_pos)).copy()
        out.append(
            SiteBatch(
                *(torch.as_tensor(a) for a in (x, mask, doc, pos)), token_id=torch.as_tensor(tok)
            )
        )
    return out


def records(batches):
    """Every valid position: value vector, doc, pos, token, previous token, batch row."""
    vals, docs, poss, toks, prevs, seqs = [], [], [], [], [], []
    for bi, b in enumerate(batches):
        x, m = b.values.double().numpy(), b.mask.numpy()
        t = b.token_id.numpy()
        for r, c in zip(*np.nonzero(m), strict=True):
            vals.append(x[r, c])
            docs.append(b.doc[r, c].item())
            poss.append(b.pos[r, c].item())
            toks.append(t[r, c])
            prevs.append(t[r, c - 1] if c > 0 and m[r, c - 1] else -1)
            seqs.append((bi, r))
    return (np.array(vals), np.array(docs), np.array(poss), np.array(toks), np.array(prevs), seqs)


def feed(batches, **kwargs):
    ts = TaxonomyStats(batches[0].n_units, **kwargs)
    for b in batches:
        ts.update(b)
    return ts


def assert_same_result(a, b):
    for name in TAXONOMY_COLUMNS:
        x, y = a[name], b[name]
        if np.issubdtype(x.dtype, np.integer):
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            # float32 batch sums around each shard's own shift: equal to float32 rounding
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=name)


KW = {"max_pos": 8, "min_pos_count": 1, "candidates": 5, "sketch_width": 4096, "sketch_depth": 3,
      "bigram_width": 1 << 12, "massive_min_abs": 100.0, "median_units": 1000}  # fmt: skip


@pytest.mark.parametrize(("nonfinite", "min_count"), [(False, 1), (True, 1), (True, 14)])
def test_positional_scores_match_brute_force(nonfinite, min_count):
    batches = token_batches(5, nonfinite=nonfinite)
    res = feed(batches, **{**KW, "min_pos_count": min_count}).result()
    vals, _, poss, *_ = records(batches)
    bucket = np.minimum(poss, KW["max_pos"] - 1)
    for u in range(vals.shape[1]):
        x = vals[:, u]
        ok = np.isfinite(x)
        x, b = x[ok], bucket[ok]
        groups = [x[b == p] for p in range(KW["max_pos"])]
        seen = [len(g) >= min_count for g in groups]
        means = np.array([g.mean() if s else -np.inf for g, s in zip(groups, seen, strict=True)])
        # R² of predicting each seen position's mean and the overall mean elsewhere
        pred = np.where(np.isin(b, np.nonzero(seen)[0]), means[b], x.mean())
        ss_b = ((x - x.mean()) ** 2).sum() - ((x - pred) ** 2).sum()
        ss_t = ((x - x.mean()) ** 2).sum()
        assert res["pos_eta2"][u] == pytest.approx(ss_b / ss_t, rel=1e-6, abs=1e-9)
        peak = int(np.argmax(means))
        assert res["pos_peak"][u] == peak
        above = means >= (means[peak] + x.mean()) / 2
        lo = peak
        while lo > 0 and above[lo - 1]:
            lo -= 1
        hi = peak
        while hi < len(means) - 1 and above[hi + 1]:
            hi += 1
        assert (res["pos_lo"][u], res["pos_hi"][u]) == (lo, hi)
    if min_count == 1:  # the planted positional unit
        assert res["pos_eta2"][2] > 0.99 and res["pos_hi"][2] == 2


def test_rarely_seen_positions_cannot_make_a_unit_positional():
    # one large value at a position seen twice: all the variance sits "at" that position
    x = torch.zeros(40, 12, 1)
    mask = torch.ones(40, 12, dtype=torch.bool)
    mask[2:, 10:] = False  # positions 10 and 11 exist in two sequences only
    x[0, 10, 0] = 50.0
    batch = SiteBatch.from_values(x, mask)
    loose = TaxonomyStats(1, max_pos=16, min_pos_count=1)
    strict = TaxonomyStats(1, max_pos=16)  # default: at least 30 values per position
    loose.update(batch)
    strict.update(batch)
    assert loose.result()["pos_eta2"][0] > 0.4 and loose.result()["pos_peak"][0] == 10
    assert strict.result()["pos_eta2"][0] < 0.05 and strict.result()["pos_peak"][0] != 10


def exact_token_scores(batches, k, threshold=0.0):
    """Best candidate (by exact F1) among the tokens at each unit's k strongest activations."""
    vals, docs, poss, toks, prevs, _ = records(batches)
    out = []
    for u in range(vals.shape[1]):
        x = vals[:, u]
        finite = np.isfinite(x)
        order = [i for i in np.lexsort((poss, docs, -np.where(finite, x, -np.inf))) if finite[i]]
        cand = order[:k]
        fire = finite & (x > threshold)
        n_fire = fire.sum()
        best = {}
        for name, key in (("tok", lambda i: (toks == toks[i])),
                          ("bigram", lambda i: (toks == toks[i]) & (prevs == prevs[i]))):  # fmt: skip
            scores = []
            for i in cand:
                sel = key(i)
                c, n_key = (fire & sel).sum(), sel.sum()
                scores.append(
                    (2 * c / max(n_key + n_fire, 1), c / max(n_key, 1), c / max(n_fire, 1), i)
                )
            f1, prec, rec, i = max(scores, key=lambda s: s[0]) if scores else (np.nan,) * 3 + (-1,)
            best[name] = (f1, prec, rec, toks[i] if i >= 0 else -1, prevs[i] if i >= 0 else -1)
        out.append((n_fire, best))
    return out


@pytest.mark.parametrize("nonfinite", [False, True])
def test_token_and_bigram_scores_match_exact_counts(nonfinite):
    batches = token_batches(6, nonfinite=nonfinite)
    res = feed(batches, **KW).result()
    for u, (n_fire, best) in enumerate(exact_token_scores(batches, KW["candidates"])):
        assert res["fire_count"][u] == n_fire
        f1, prec, rec, tok, _ = best["tok"]
        assert res["tok_f1"][u] == pytest.approx(f1, abs=1e-12)
        assert res["tok_precision"][u] == pytest.approx(prec, abs=1e-12)
        assert res["tok_recall"][u] == pytest.approx(rec, abs=1e-12)
        assert res["tok_id"][u] == tok
        f1, prec, rec, tok, prev = best["bigram"]
        assert res["bigram_f1"][u] == pytest.approx(f1, abs=1e-12)
        assert (res["bigram_id"][u], res["bigram_prev_id"][u]) == (tok, prev)
    assert (res["tok_id"][0], res["tok_f1"][0]) == (3, 1.0)


def test_narrow_sketches_only_overestimate_within_the_count_min_bound():
    batches = token_batches(6)
    width = 8
    res = feed(batches, **{**KW, "sketch_width": width, "sketch_depth": 2}).result()
    exact = exact_token_scores(batches, KW["candidates"])
    for u, (_, best) in enumerate(exact):
        # the chosen candidate's estimate is >= the best exact F1, and the overestimate of a
        # count is at most (e / width) * fire_count w.h.p., i.e. at most 2e/width in F1
        assert best["tok"][0] - 1e-12 <= res["tok_f1"][u] <= best["tok"][0] + 2 * math.e / width


def test_massive_statistics_match_brute_force():
    batches = token_batches(5, nonfinite=True)
    ts = feed(batches, **KW)
    res = ts.result()
    vals, docs, poss, toks, _, seqs = records(batches)
    absx = np.where(np.isfinite(vals), np.abs(vals), -np.inf)
    for u in range(vals.shape[1]):
        i = np.lexsort((poss, docs, -absx[:, u]))[0]
        assert res["absmax"][u] == pytest.approx(absx[i, u], rel=1e-7)
        assert (res["absmax_doc"][u], res["absmax_pos"][u]) == (docs[i], poss[i])
        assert res["absmax_token_id"][u] == toks[i]
    finite = np.abs(vals[np.isfinite(vals)])
    lower_median = np.sort(finite)[(len(finite) + 1) // 2 - 1]
    assert res["site_median_abs"][0] == pytest.approx(lower_median, rel=0.0625)
    assert res["massive_ratio"][3] == pytest.approx(150.0 / res["site_median_abs"][0])
    n_seq = len(set(seqs))
    assert res["massive_pos_mode"][3] == 0
    assert res["massive_pos_frac"][3] == pytest.approx(1.0)
    assert res["massive_seq_frac"][3] == pytest.approx(1.0)
    # the tokens at position 0 vary: the share of sequences on the absmax token is its frequency
    first = {s: t for s, t, p in zip(seqs, toks, poss, strict=True) if p == 0}
    same = sum(t == res["absmax_token_id"][3] for t in first.values())
    assert res["massive_token_frac"][3] == pytest.approx(same / n_seq)
    others = [u for u in range(vals.shape[1]) if u != 3]
    assert (res["massive_seq_frac"][others] == 0).all()
    assert (res["massive_pos_mode"][others] == -1).all()


@pytest.mark.parametrize("nonfinite", [False, True])
def test_merge_of_shards_equals_one_pass(nonfinite):
    batches = token_batches(7, nonfinite=nonfinite, seed=3)
    whole = feed(batches, **KW).result()
    for cut in (1, 3, 6):
        a, b = feed(batches[:cut], **KW), feed(batches[cut:], **KW)
        assert_same_result(a.merge(b).result(), whole)
        a, b = feed(batches[:cut], **KW), feed(batches[cut:], **KW)
        assert_same_result(b.merge(a).result(), whole)  # order does not matter either


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=6, max_size=6))
def test_any_sharding_merges_to_one_pass(assign):
    batches = token_batches(6, seed=11, nonfinite=True)
    whole = feed(batches, **KW).result()
    shards = [TaxonomyStats(batches[0].n_units, **KW) for _ in range(3)]
    for b, s in zip(batches, assign, strict=True):
        shards[s].update(b)
    merged = shards[2].merge(shards[0]).merge(shards[1])
    assert_same_result(merged.result(), whole)


def test_state_round_trip_and_resume():
    batches = token_batches(6, nonfinite=True, seed=5)
    whole = feed(batches, **KW)
    part = feed(batches[:3], **KW)
    buf = io.BytesIO()
    torch.save(part.state_dict(), buf)
    buf.seek(0)
    resumed = TaxonomyStats.from_state_dict(torch.load(buf, weights_only=True))
    for b in batches[3:]:
        resumed.update(b)
    assert_same_result(resumed.result(), whole.result())
    empty = TaxonomyStats.from_state_dict(TaxonomyStats(4).state_dict())
    assert np.isnan(empty.result()["pos_eta2"]).all()


def test_plain_batches_give_positional_and_massive_columns_only():
    x = torch.randn(3, 10, 4)
    x[:, 2, 1] = 500.0
    ts = TaxonomyStats(4, max_pos=16)
    ts.update(SiteBatch.from_values(x))
    res = ts.result()
    assert set(res) == set(TAXONOMY_COLUMNS)
    assert np.isnan(res["tok_f1"]).all() and (res["tok_id"] == -1).all()
    assert np.isnan(res["massive_token_frac"]).all()
    assert (res["massive_pos_mode"][1], res["massive_pos_frac"][1]) == (2, 1.0)
    assert res["fire_count"].tolist() == [0, 0, 0, 0]  # firing is only counted with tokens


def test_two_dimensional_activations_and_empty_batches():
    ts = TaxonomyStats(3, max_pos=4, min_pos_count=1)
    ts.update(SiteBatch.from_values(torch.zeros(0, 3)))
    ts.update(SiteBatch.from_values(torch.randn(20, 3)))  # (batch, unit): one position per row
    res = ts.result()
    assert (res["pos_peak"] == 0).all()
    assert res["pos_eta2"].tolist() == [0.0, 0.0, 0.0]


def test_errors_say_what_was_expected():
    with pytest.raises(AccumulatorError, match="power of two"):
        TaxonomyStats(4, sketch_width=100)
    with pytest.raises(AccumulatorError, match="max_pos"):
        TaxonomyStats(4, max_pos=0)
    with pytest.raises(AccumulatorError, match="threshold"):
        TaxonomyStats(4, threshold=float("nan"))
    with pytest.raises(AccumulatorError, match="massive_min_abs"):
        TaxonomyStats(4, massive_min_abs=0.0)
    ts = TaxonomyStats(7)
    with pytest.raises(AccumulatorError, match="7 units"):
        ts.update(SiteBatch.from_values(torch.randn(2, 3, 5)))
    tok = token_batches(1)[0]
    ts.update(tok)
    with pytest.raises(AccumulatorError, match="with and without token ids"):
        ts.update(SiteBatch.from_values(torch.randn(2, 3, 7)))
    bad = SiteBatch(tok.values, tok.mask, tok.doc, tok.pos, token_id=-tok.token_id - 1)
    with pytest.raises(AccumulatorError, match="Token ids must be"):
        TaxonomyStats(7).update(bad)
    with pytest.raises(AccumulatorError, match="different 'max_pos'"):
        TaxonomyStats(7, max_pos=4).merge(TaxonomyStats(7, max_pos=8))
    with pytest.raises(AccumulatorError, match="not a 'TaxonomyStats'"):
        TaxonomyStats.from_state_dict({"kind": "Moments", "version": 1})
