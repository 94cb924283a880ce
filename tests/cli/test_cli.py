"""The neuronatlas command: map (on MiniLM and on a factory model), info, query, errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from neuronatlas.cli import _verb_modules
from neuronatlas.cli._app import app, load_verbs

load_verbs(_verb_modules())
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def minilm_atlas(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "minilm"
    res = run("map", "--max-tokens", "1500", "--out", str(out), "--top-k", "5", "--batch-size", "4")
    assert res.exit_code == 0, res.output
    assert "9,216 units in 6 sites over 1,500 tokens" in res.output
    return out


@pytest.mark.slow
def test_minilm_map_matches_plain_hooks(minilm_atlas):
    """The default map's statistics, recomputed with plain hooks + numpy on the same sequences."""
    from neuronatlas.models import load_model

    model = load_model("minilm").model
    tokens = pd.read_parquet(minilm_atlas / "tokens.parquet")
    acts = {i: [] for i in range(6)}
    hooks = [
        layer.output.dense.register_forward_pre_hook(
            lambda m, a, i=i: acts[i].append(a[0][0].numpy().copy())
        )
        for i, layer in enumerate(model.encoder.layer)
    ]
    try:
        with torch.no_grad():
            for _, seq in tokens.groupby("doc", sort=True):
                ids = torch.tensor(seq.sort_values("pos")["token_id"].to_numpy())[None]
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        for h in hooks:
            h.remove()
    units = pd.read_parquet(minilm_atlas / "units.parquet")
    assert len(units) == 6 * 1536
    for layer in (0, 5):
        x = np.concatenate(acts[layer]).astype(np.float64)
        u = units[units.layer == layer].sort_values("unit")
        assert (u["count"] == x.shape[0]).all()
        np.testing.assert_allclose(u["mean"], x.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(u["std"], x.std(0), rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(u["max"], x.max(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(u["frac_active"], (x > 0).mean(0), atol=1e-9)
        np.testing.assert_allclose(u["p50"], np.median(x, 0), atol=0.05)


def test_info_shows_layers_and_kurtotic_units(minilm_atlas):
    res = run("info", str(minilm_atlas))
    assert res.exit_code == 0, res.output
    assert "sentence-transformers/all-MiniLM-L6-v2" in res.output
    assert "encoder.layer.5.output.dense:input" in res.output
    assert "highest kurtosis" in res.output and "⟦" in res.output


def test_query_table_csv_json(minilm_atlas):
    sql = "select layer, count(*) as n from units group by layer order by layer"
    res = run("query", str(minilm_atlas), sql, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == [{"layer": i, "n": 1536} for i in range(6)]
    res = run("query", str(minilm_atlas), sql, "--csv")
    assert res.output.splitlines()[:2] == ["layer,n", "0,1536"]
    res = run("query", str(minilm_atlas), sql)
    assert "1536" in res.output


def test_bad_query_is_a_clear_error(minilm_atlas):
    res = runner.invoke(app, ["query", str(minilm_atlas), "select nope from units"])
    assert res.exit_code == 2
    assert "The query failed" in res.output and "describe units" in res.output


def test_existing_atlas_other_settings_refused(minilm_atlas):
    res = runner.invoke(app, ["map", "--max-tokens", "1500", "--out", str(minilm_atlas)])
    assert res.exit_code == 2
    assert "other settings" in res.output and "--force" in res.output


def test_map_a_factory_model_over_tensors(tmp_path, monkeypatch):
    pkg = tmp_path / "toymodels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))\n"
    )
    torch.save([torch.randn(8, 6) for _ in range(3)], tmp_path / "inputs.pt")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("toymodels", None)
    res = run(
        "map",
        "--model",
        "toymodels.nets:build",
        "--data",
        str(tmp_path / "inputs.pt"),
        "--sites",
        "1",
        "--out",
        str(tmp_path / "atlas"),
    )
    assert res.exit_code == 0, res.output
    units = pd.read_parquet(tmp_path / "atlas" / "units.parquet")
    assert len(units) == 12 and (units["count"] == 24).all()
    assert (units["min"] >= 0).all()  # ReLU outputs


def test_unknown_model_offline_says_what_to_do(tmp_path):
    res = runner.invoke(
        app, ["map", "--model", "no-such-org/no-such-model", "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2
    assert "local folder" in res.output


def test_missing_data_file_is_a_clear_error(tmp_path):
    res = runner.invoke(
        app, ["map", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2
    assert "missing.jsonl" in res.output
