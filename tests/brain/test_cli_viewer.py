"""`neuronatlas brain import` and `neuronatlas encode`, and the brain atlas in the viewer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from brain._brain_util import planted_recording
from typer.testing import CliRunner

from neuronatlas.cli import _verb_modules
from neuronatlas.cli._app import app, load_verbs

load_verbs(_verb_modules())
runner = CliRunner()
SITE = "encoder.layer.1"


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def brain_dir(model_atlas, tmp_path_factory) -> Path:
    """A planted recording saved as npz + a stimulus table, imported and encoded by the CLI."""
    tmp = tmp_path_factory.mktemp("cli")
    rec = planted_recording(model_atlas, SITE)
    labels = rec.stimuli["name"].to_numpy(str)[rec.trial_stimulus]
    np.savez(tmp / "rec.npz", responses=rec.responses, stimulus=labels,
             site=rec.units["site"].to_numpy(str))  # fmt: skip
    rec.stimuli[["name", "text"]].to_csv(tmp / "stimuli.csv", index=False)
    out = tmp / "brain"
    res = run("brain", "import", tmp / "rec.npz", "--out", out, "--stimuli", tmp / "stimuli.csv",
              "--model-atlas", model_atlas.path, "--top-k", "4")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "10 units in 2 sites, 60 stimuli, 180 trials (3-3 per stimulus)" in res.output
    res = run("encode", model_atlas.path, out, "--site", "encoder.layer.*", "--alphas",
              "0.01,0.1,1,10,100,1000", "--folds", "4", "--name", "cli")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "best site for V1:" in res.output and "r / ceiling" in res.output
    return out


def test_cli_writes_the_analysis(brain_dir):
    scores = pd.read_parquet(brain_dir / "analyses/encoding/cli/scores.parquet")
    assert len(scores) == 4 * 10 and scores["cc_max"].notna().all()
    assert set(scores["alpha"]) <= {0.01, 0.1, 1, 10, 100, 1000}


def test_info_summarizes_a_brain_atlas(brain_dir):
    # brain sites have no layer: the per-site table leaves it blank instead of failing
    res = run("info", brain_dir)
    assert res.exit_code == 0, res.output
    assert "units per site" in res.output and "V1" in res.output
    assert "analyses" in res.output and "encoding/cli" in res.output  # what ran on it


def test_cli_errors_are_one_line(model_atlas, brain_dir, tmp_path):
    res = run("encode", model_atlas.path, model_atlas.path, "--site", SITE)
    assert res.exit_code == 2 and "not a brain atlas" in res.output
    res = run("encode", model_atlas.path, brain_dir, "--site", SITE, "--alphas", "a,b")
    assert res.exit_code == 2 and "must be numbers" in res.output
    res = run("brain", "import", tmp_path / "nothing.npz", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "No recording at" in res.output
    res = run("brain", "import", tmp_path / "x.nii.gz", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "--mask" in res.output


def test_encoding_page_only_for_brain_atlases(brain_dir, model_atlas):
    from starlette.testclient import TestClient

    from neuronatlas.viewer import create_app

    with TestClient(create_app(brain_dir), base_url="http://127.0.0.1") as c:
        page = c.get("/encoding")
        assert page.status_code == 200
        assert page.text.count("<svg") >= 5  # r and r/ceiling per region, and the scatter
        assert "encoder.layer.1" in page.text and 'href="/encoding"' in c.get("/").text
        unit = c.get("/unit/V1/0").text  # the unit's own scores, one row per model site
        assert "Encoding models" in unit and unit.count("<td>cli</td>") == 4
    with TestClient(create_app(model_atlas.path), base_url="http://127.0.0.1") as c:
        assert c.get("/encoding").status_code == 404
        assert 'href="/encoding"' not in c.get("/").text
        assert "Encoding models" not in c.get("/unit/encoder.layer.0/0").text


def test_static_export_has_the_encoding_page(brain_dir, tmp_path):
    from neuronatlas.viewer import export_html

    export_html(brain_dir, tmp_path / "site")
    html = (tmp_path / "site" / "encoding.html").read_text()
    assert html.count("<svg") >= 5 and "encoder.layer.1" in html
    assert len(list((tmp_path / "site" / "unit").rglob("*.html"))) == 10


@pytest.mark.browser
def test_brain_units_render_in_chromium(brain_dir):
    from viewer._viewer_util import CHROMIUM, CHROMIUM_ARGS

    from neuronatlas.viewer import serve_in_thread

    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    problems: list[str] = []
    with serve_in_thread(brain_dir) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS)  # fmt: skip
        page = browser.new_page()
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(url + "/")
        assert page.locator("table.sites tbody tr").count() == 2  # V1, IT
        page.goto(url + "/unit/IT/0")
        first = page.locator("ol.exemplars li").first.inner_text()
        assert "Story" in first  # the stimulus text of the unit's strongest stimulus
        page.goto(url + "/encoding")
        assert page.locator("svg").count() >= 5
        assert page.locator("table.encoding-summary tbody tr").count() == 8
        browser.close()
    assert problems == [], problems
