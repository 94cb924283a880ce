"""``neuronatlas heads`` and ``neuronatlas experiment induction``."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from neuronatlas.cli import _verb_modules
from neuronatlas.cli._app import app, load_verbs
from neuronatlas.viewer import write_synthetic_atlas

load_verbs(_verb_modules())
runner = CliRunner()


def test_heads_into_an_atlas(tmp_path):
    atlas = write_synthetic_atlas(tmp_path / "atlas", n_layers=1, n_units=4)
    args = ["heads", str(atlas), "--model", "heads.conftest:planted_model", "--n-seq", "4"]
    res = runner.invoke(app, args)  # the synthetic corpus has ids beyond the model's 64
    assert res.exit_code == 2
    assert "tokenized for another model" in res.output
    res = runner.invoke(app, [*args, "--texts", "0"])
    assert res.exit_code == 0, res.output
    assert "induction" in res.output and "L1H0" in res.output
    scores = pd.read_parquet(atlas / "analyses/heads/scores/scores.parquet")
    assert len(scores) == 4


def test_heads_of_a_model_to_a_file(tmp_path):
    out = tmp_path / "scores.csv"
    res = runner.invoke(
        app, ["heads", "heads.conftest:planted_model", "--n-seq", "4", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(out)) == 4


def test_errors_are_one_line(tmp_path):
    res = runner.invoke(app, ["heads", "helpers:tiny_sequential"])
    assert res.exit_code == 2
    assert "error:" in res.output and "attention block" in res.output
    bad = runner.invoke(app, ["experiment", "induction", "--steps", "0"])
    assert bad.exit_code != 0


@pytest.mark.parametrize("steps", ["3"])
def test_experiment_induction(tmp_path, steps, monkeypatch):
    from neuronatlas.heads import _induction

    small = _induction.InductionConfig(
        vocab=16, n_ctx=16, seg_min=3, seg_max=6, d_model=16, n_heads=2, d_head=8,
        batch=4, eval_every=5, n_eval=16,
    )  # fmt: skip
    monkeypatch.setattr(
        _induction, "InductionConfig", lambda **kw: small.__class__(**{**small.__dict__, **kw})
    )
    res = runner.invoke(app, ["experiment", "induction", "--out", str(tmp_path), "--steps", steps])
    assert res.exit_code == 0, res.output
    assert "2-layer: phase change" in res.output and "1-layer" in res.output
    assert "ablate none" in res.output
