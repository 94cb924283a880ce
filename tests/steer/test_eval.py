"""Fluency, behaviour metrics and sweeps; sweeps saved in an atlas."""

from __future__ import annotations

import math

import pytest
import torch
from steer._steer_util import token_lists

from neuronatlas.atlas import list_analyses
from neuronatlas.steer import caa, fluency, load_sweep, logprob_margin, save_sweep, sweep
from neuronatlas.steer._errors import SteeringError


@torch.no_grad()
def test_perplexity_matches_the_models_own_loss(gpt2):
    seq = token_lists(0, 1, 12)
    f = fluency(gpt2, seq)
    loss = gpt2(input_ids=seq[0][None], labels=seq[0][None]).loss
    assert f["ppl"] == pytest.approx(math.exp(loss.item()), rel=1e-5)
    assert f["n_tokens"] == 11 and f["n_nonfinite"] == 0 and math.isnan(f["kl"])
    same = fluency(gpt2, seq, reference=f["reference"])
    assert same["kl"] == pytest.approx(0.0, abs=1e-7)
    # padding: two lengths in one batch give the per-token mean over both
    two = token_lists(1, 1, 7) + seq
    f2 = fluency(gpt2, two)
    l1 = gpt2(input_ids=two[0][None], labels=two[0][None]).loss.item()
    assert f2["nll"] == pytest.approx((6 * l1 + 11 * loss.item()) / 17, rel=1e-5)


@torch.no_grad()
def test_kl_is_positive_under_an_edit_and_nonfinite_is_counted(gpt2):
    seqs = token_lists(2, 3, 10)
    base = fluency(gpt2, seqs)
    v = 3.0 * torch.randn(32, generator=torch.Generator().manual_seed(0))
    edited = fluency(
        gpt2, seqs, edits={"transformer.h.0": lambda t, ctx: t + v}, reference=base["reference"]
    )
    assert edited["kl"] > 1e-3 and edited["ppl"] != base["ppl"]

    def nan_at_5(t, ctx):
        t = t.clone()
        t[:, 5] = float("nan")
        return t

    broken = fluency(gpt2, seqs, edits={"transformer.h.1": nan_at_5}, reference=base["reference"])
    # NaN at position 5 of the last block: one NaN prediction per sequence, left out of the means
    assert broken["n_nonfinite"] == 3
    assert broken["n_tokens"] == 3 * 8 and math.isfinite(broken["ppl"])
    with pytest.raises(SteeringError, match="at least 2 tokens"):
        fluency(gpt2, [torch.tensor([3])])


@torch.no_grad()
def test_sweep_table_and_atlas_round_trip(gpt2, atlas):
    pos, neg = token_lists(3, 4, 6), token_lists(4, 4, 6)
    vecs = caa(gpt2, pos, neg, "resid")
    metric = logprob_margin(pos, neg)
    table = sweep(gpt2, vecs, [-1.0, 0.0, 2.0], metric, token_lists(5, 3, 8))
    assert len(table) == 6
    assert list(table["layer"]) == [0, 0, 0, 1, 1, 1]
    zero = table[table["coef"] == 0.0]
    assert (zero["behaviour"] - zero["behaviour_base"]).abs().max() < 1e-9
    assert (zero["ppl_ratio"] - 1).abs().max() < 1e-9 and zero["kl"].abs().max() < 1e-7
    # the metric under an edit equals the metric computed by hand under the same edit
    from neuronatlas.intervene import intervene

    v = vecs["transformer.h.1"]
    with intervene(gpt2, {v.site: v.edit(2.0)}):
        by_hand = metric(gpt2)
    row = table[(table["site"] == v.site) & (table["coef"] == 2.0)].iloc[0]
    assert row["behaviour"] == pytest.approx(by_hand, rel=1e-9)
    assert (table[table["coef"] != 0]["kl"] > 0).all()

    entry = save_sweep(atlas, "demo", table, vectors=list(vecs.values()), behaviour="log-odds")
    assert entry["key"] == "steer/demo" and entry["coefs"] == [-1.0, 0.0, 2.0]
    assert set(entry["files"]) == {"sweep.parquet", "vectors.safetensors", "vectors.json"}
    back = load_sweep(atlas, "demo")
    assert back.equals(table)
    assert [a["key"] for a in list_analyses(atlas, "steer")] == ["steer/demo"]
    with pytest.raises(SteeringError, match="lacks columns"):
        save_sweep(atlas, "bad", table.drop(columns=["kl"]))
