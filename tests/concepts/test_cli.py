"""``neuronatlas probe`` and ``neuronatlas concepts`` on a tiny atlas."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from neuronatlas.cli import _verb_modules
from neuronatlas.cli._app import app, load_verbs

load_verbs(_verb_modules())
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def atlas(tiny_atlas, tmp_path):
    out = tmp_path / "atlas"
    shutil.copytree(tiny_atlas, out)
    return out


def test_probe_methods_write_their_analyses(atlas):
    site = "encoder.layer.1.output.dense:input"
    res = run("probe", str(atlas), "--label", "code", "--site", site, "--max-rows", "300")
    assert res.exit_code == 0, res.output
    assert "selectivity" in res.output
    res = run(
        "probe",
        str(atlas),
        "--label",
        "keyword",
        "--method",
        "sparse",
        "--site",
        site,
        "--max-rows",
        "300",
    )
    assert res.exit_code == 0, res.output
    assert "F1@k=1" in res.output
    res = run(
        "probe",
        str(atlas),
        "--label",
        "code",
        "--method",
        "net2vec",
        "--site",
        site,
        "--max-rows",
        "300",
    )
    assert res.exit_code == 0, res.output
    analyses = json.loads((atlas / "atlas.json").read_text())["analyses"]
    assert {"probes/code", "probes/keyword-sparse", "probes/code-net2vec"} <= set(analyses)
    assert analyses["probes/keyword-sparse"]["method"] == "k-sparse"


def test_concepts_verb(atlas):
    res = run("concepts", str(atlas), "--site", "encoder.layer.0", "--concepts", "3")
    assert res.exit_code == 0, res.output
    assert "relative reconstruction error" in res.output and "top tokens" in res.output


def test_errors_are_one_line_messages(atlas, tmp_path):
    res = run("probe", str(atlas), "--label", "nope")
    assert res.exit_code == 2 and "Known labels" in res.output
    res = run("probe", str(atlas), "--label", "code", "--method", "dense")
    assert res.exit_code == 2 and "--method must be one of" in res.output
    manifest = json.loads((atlas / "atlas.json").read_text())
    del manifest["store"]
    (atlas / "atlas.json").write_text(json.dumps(manifest))
    res = run("probe", str(atlas), "--label", "code")
    assert res.exit_code == 2 and "--keep-activations" in res.output
