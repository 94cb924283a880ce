"""The induction experiment at a tiny size: data, log, ablations, cache, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from neuronatlas.heads import HeadsError
from neuronatlas.heads._induction import InductionConfig, make_sequences, run_induction

TINY = InductionConfig(
    vocab=16, n_ctx=16, seg_min=3, seg_max=6, d_model=16, n_heads=2, d_head=8, steps=12,
    batch=8, eval_every=5, n_eval=32,
)  # fmt: skip


def test_sequences_repeat_a_segment_at_varying_offsets():
    ids, ic = make_sequences(TINY, 200, torch.Generator().manual_seed(0))
    offsets = set()
    for row, mask in zip(ids, ic, strict=True):
        pos = mask.nonzero().squeeze(1)
        assert len(pos) >= TINY.seg_min - 1
        c = int(pos[0])  # first in-context position = start of the second copy
        # the token after each in-context position is the token after its first occurrence
        found = [
            a for a in range(c) if torch.equal(row[a : a + len(pos) + 1], row[c : c + len(pos) + 1])
        ]
        assert found, "the second copy repeats an earlier segment"
        offsets.add(c - found[0])
    assert len(offsets) > 5


def test_run_writes_log_figures_ablations_and_caches(tmp_path):
    lines: list[str] = []
    res = run_induction(TINY, tmp_path, progress=lines.append)
    assert res.folder.parent == tmp_path
    for f in (
        "log.parquet",
        "summary.json",
        "loss.png",
        "induction_score.png",
        "model-2l.pt",
        "model-1l.pt",
    ):
        assert (res.folder / f).is_file(), f
    log = res.log
    assert sorted(log["n_layers"].unique()) == [1, 2]
    assert log.groupby("n_layers")["step"].max().tolist() == [12, 12]  # final step evaluated
    assert {"L1H1_induction", "L0H0_previous_token"} <= set(log.columns)
    m2 = res.summary["models"]["2"]
    assert m2["ablations"][0]["ablated"] == "none"
    assert res.summary["chance_acc"] == pytest.approx(1 / 16)
    assert len(lines) == len(log)
    again = run_induction(TINY, tmp_path, progress=lines.append)  # cached: no training
    assert len(lines) == len(log)
    assert again.summary == json.loads((res.folder / "summary.json").read_text())


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(HeadsError, match="must appear twice"):
        run_induction(InductionConfig(n_ctx=16, seg_min=4, seg_max=12), tmp_path)
