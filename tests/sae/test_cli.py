"""``neuronatlas sae train | eval | map | list`` on the tiny atlas."""

from __future__ import annotations

import json

from sae._sae_util import SITE
from typer.testing import CliRunner

from neuronatlas import open_atlas
from neuronatlas.atlas import get_analysis
from neuronatlas.cli import _verb_modules
from neuronatlas.cli._app import app, load_verbs

load_verbs(_verb_modules())
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_train_eval_map_list(atlas_copy):
    res = run("sae", "train", atlas_copy, "--site", SITE, "--arch", "topk", "--k", "4",
              "--width", "64", "--steps", "6", "--batch-size", "32", "--name", "tk",
              "--device", "cpu", "--map")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "variance_explained" in res.output and f"{SITE}@sae:tk" in res.output
    folder = atlas_copy / "analyses" / "sae" / "tk"
    assert {p.name for p in folder.iterdir()} >= {
        "sae_weights.safetensors", "cfg.json", "checkpoint.pt", "training_log.jsonl", "eval.json"
    }  # fmt: skip
    entry = get_analysis(atlas_copy, "sae", "tk")
    assert entry["metrics"]["l0"] == 4.0 and entry["derived_site"] == f"{SITE}@sae:tk"
    assert entry["metrics"]["train_steps"] == 6

    res = run("sae", "train", atlas_copy, "--site", SITE, "--k", "4", "--width", "64",
              "--steps", "6", "--batch-size", "32", "--name", "tk")  # fmt: skip
    assert res.exit_code == 2 and "--resume" in res.output  # a checkpoint is in the way
    res = run("sae", "train", atlas_copy, "--site", SITE, "--k", "4", "--width", "64",
              "--steps", "6", "--batch-size", "32", "--name", "tk", "--resume")  # fmt: skip
    assert res.exit_code == 0, res.output  # already done: resumes at the end

    res = run("sae", "eval", atlas_copy, "--name", "tk", "--json")
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.output.strip().splitlines()[-1])
    assert metrics["l0"] == 4.0 and 0.0 < metrics["variance_explained"] <= 1.0

    res = run("sae", "map", atlas_copy, "--name", "tk", "--device", "cpu")
    assert res.exit_code == 0, res.output
    atlas = open_atlas(atlas_copy)
    assert (atlas.units.site == f"{SITE}@sae:tk").sum() == 64

    res = run("sae", "list", atlas_copy)
    assert res.exit_code == 0 and "tk" in res.output and "topk" in res.output


def test_errors_are_one_line(atlas_copy):
    res = run("sae", "train", atlas_copy, "--site", "nope", "--steps", "2")
    assert res.exit_code == 2 and "has no site 'nope'" in res.output
    res = run("sae", "train", atlas_copy, "--site", SITE, "--arch", "gated", "--steps", "2")
    assert res.exit_code == 2 and "Unknown SAE architecture 'gated'" in res.output
    res = run("sae", "eval", atlas_copy, "--name", "missing")
    assert res.exit_code == 2 and "no analysis sae/missing" in res.output


def test_bad_architecture_or_site_fails_before_training_starts(atlas_copy):
    res = run("sae", "train", atlas_copy, "--site", SITE, "--arch", "topkk")
    assert res.exit_code == 2 and "Unknown SAE architecture 'topkk'" in res.output
    assert "Training" not in res.output
    res = run("sae", "train", atlas_copy, "--site", "no.such.site")
    assert res.exit_code == 2 and "has no site 'no.such.site'" in res.output
    assert "Training" not in res.output
