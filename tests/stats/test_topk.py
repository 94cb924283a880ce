"""Top-k exemplars: exact against brute force, with ties, context, merges and the gate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats import SiteBatch, TopK


def tie_heavy_batches(n_batches, n_units, *, seed, rows=3, n_pos=12):
    """Few distinct values (many ties), padding, and doc ids in shuffled order across batches."""
    rng = np.random.default_rng(seed)
    docs = rng.permutation(n_batches * rows)
    out = []
    for i in range(n_batches):
        values = rng.integers(-3, 4, size=(rows, n_pos, n_units)).astype(np.float32)
        values[..., 0] = rng.standard_normal((rows, n_pos))  # one unit without ties
        values[..., -1] = 0.0  # a dead unit: every value ties
        lengths = rng.integers(1, n_pos + 1, size=rows)
        mask = np.arange(n_pos)[None, :] < lengths[:, None]
        doc = np.repeat(docs[i * rows : (i + 1) * rows, None], n_pos, axis=1)
        pos = np.broadcast_to(np.arange(n_pos), (rows, n_pos)).copy()
        out.append(SiteBatch(*(torch.as_tensor(a) for a in (values, mask, doc, pos))))
    return out


def brute_force(batches, k, context):
    """Exemplars by sorting every (value, doc, pos) of each unit; context from the batches."""
    rows = []
    for bi, b in enumerate(batches):
        v, m = b.values.numpy(), b.mask.numpy()
        d, p = b.doc.numpy(), b.pos.numpy()
        for r, s in zip(*np.nonzero(m), strict=True):
            rows.append((bi, r, s, d[r, s], p[r, s], v[r, s]))
    n_units = batches[0].n_units
    want = {key: [] for key in ("unit", "rank", "activation", "doc", "pos", "ctx_acts")}
    for u in range(n_units):
        vals = np.array([row[5][u] for row in rows], dtype=np.float64)
        docs = np.array([row[3] for row in rows])
        poss = np.array([row[4] for row in rows])
        finite = np.isfinite(vals)
        order = [i for i in np.lexsort((poss, docs, -vals)) if finite[i]][:k]
        for rank, i in enumerate(order):
            bi, r, s, d, p, _ = rows[i]
            b = batches[bi]
            ctx = np.full(2 * context + 1, np.nan, dtype=np.float32)
            for j in range(-context, context + 1):
                t = s + j
                n_pos = b.values.shape[1]
                if 0 <= t < n_pos and b.mask[r, t] and b.doc[r, t] == d:
                    ctx[j + context] = b.values[r, t, u]
            for key, val in zip(want, (u, rank, vals[i], d, p, ctx), strict=True):
                want[key].append(val)
    return {key: np.array(val) for key, val in want.items()}


def assert_same(got, want):
    np.testing.assert_array_equal(got["unit"], want["unit"])
    np.testing.assert_array_equal(got["rank"], want["rank"])
    np.testing.assert_array_equal(got["activation"], want["activation"].astype(np.float32))
    np.testing.assert_array_equal(got["doc"], want["doc"])
    np.testing.assert_array_equal(got["pos"], want["pos"])
    np.testing.assert_array_equal(got["ctx_acts"], want["ctx_acts"].reshape(got["ctx_acts"].shape))


@pytest.mark.parametrize(("k", "context"), [(1, 0), (5, 2), (40, 3)])
def test_exact_with_ties_padding_and_context(k, context):
    batches = tie_heavy_batches(12, 5, seed=k)
    t = TopK(5, k=k, context=context)
    for b in batches:
        t.update(b)
    got = t.exemplars()
    assert_same(got, brute_force(batches, k, context))
    np.testing.assert_array_equal(got["ctx_start"], got["pos"] - context)
    assert got["ctx_acts"].dtype == np.float32 and got["activation"].dtype == np.float32


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), n_shards=st.integers(2, 4), k=st.integers(1, 8))
def test_merge_of_random_splits_equals_one_pass(seed, n_shards, k):
    batches = tie_heavy_batches(10, 4, seed=seed)
    owner = np.random.default_rng(seed).integers(0, n_shards, size=len(batches))
    one = TopK(4, k=k, context=2)
    shards = [TopK(4, k=k, context=2) for _ in range(n_shards)]
    for b, o in zip(batches, owner, strict=True):
        one.update(b)
        shards[o].update(b)
    merged = shards[-1]
    for s in shards[:-1]:
        merged.merge(s)
    assert_same(one.exemplars(), brute_force(batches, k, 2))
    for key, col in one.exemplars().items():
        np.testing.assert_array_equal(merged.exemplars()[key], col, err_msg=key)


def test_nonfinite_values_never_become_exemplars():
    x = torch.tensor([[[float("nan"), 1.0], [float("inf"), -2.0], [3.0, float("-inf")]]])
    t = TopK(2, k=3, context=1)
    t.update(SiteBatch.from_values(x))
    ex = t.exemplars()
    np.testing.assert_array_equal(ex["unit"], [0, 1, 1])
    np.testing.assert_array_equal(ex["activation"], [3.0, 1.0, -2.0])
    np.testing.assert_array_equal(ex["ctx_acts"][0], [np.inf, 3.0, np.nan])


class RecordingTopK(TopK):
    """A TopK that records which units changed their exemplars in each batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.worked: list[list[int]] = []

    def update(self, batch):
        before = (self.value_.clone(), self.doc_.clone(), self.pos_.clone())
        super().update(batch)
        after = (self.value_, self.doc_, self.pos_)
        changed = torch.zeros(self.n_units, dtype=torch.bool)
        for b, a in zip(before, after, strict=True):
            changed |= ~((b == a) | (b.isnan() & a.isnan())).all(1)
        self.worked.append(torch.nonzero(changed).reshape(-1).tolist())


def test_only_units_that_improve_change():
    rng = np.random.default_rng(3)
    t = RecordingTopK(6, k=3, context=1)
    base = rng.standard_normal((2, 8, 6)).astype(np.float32) + 10
    t.update(SiteBatch.from_values(torch.as_tensor(base)))
    assert t.worked == [list(range(6))]
    low = base - 20
    low[0, 0, 4] = 100.0  # only unit 4 can improve
    t.update(SiteBatch.from_values(torch.as_tensor(low), first_doc=5))
    assert t.worked[-1] == [4]
    # a tie with the k-th best only wins with a smaller (doc, pos)
    kth = float(t.value_[2, -1])
    tie = np.full((1, 1, 6), -50.0, dtype=np.float32)
    tie[0, 0, 2] = kth
    t.update(SiteBatch.from_values(torch.as_tensor(tie), first_doc=99))  # larger doc: loses
    assert t.worked[-1] == []
    t.update(SiteBatch.from_values(torch.as_tensor(tie), first_doc=-1))  # smaller doc: wins
    assert t.worked[-1] == [2]
    assert int(t.doc_[2, -1]) == -1


def test_fewer_values_than_k_and_state_round_trip(tmp_path):
    t = TopK(2, k=5, context=1)
    t.update(SiteBatch.from_values(torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])))
    ex = t.exemplars()
    np.testing.assert_array_equal(ex["unit"], [0, 0, 1, 1])
    torch.save(t.state_dict(), tmp_path / "t.pt")
    back = TopK.from_state_dict(torch.load(tmp_path / "t.pt", weights_only=True))
    for key, col in ex.items():
        np.testing.assert_array_equal(back.exemplars()[key], col)
    empty = TopK(3).exemplars()
    assert empty["unit"].shape == (0,) and empty["ctx_acts"].shape == (0, 21)


def test_settings_are_checked():
    with pytest.raises(AccumulatorError, match="different 'k'"):
        TopK(2, k=3).merge(TopK(2, k=4))
    with pytest.raises(AccumulatorError, match="different 'context'"):
        TopK(2, context=3).merge(TopK(2))
    with pytest.raises(AccumulatorError, match="'k' parameter of TopK must be an int >= 1"):
        TopK(2, k=0)
