"""compare_atlases end to end on tiny atlases: alignment, saved results, CLI, viewer page."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from compare.conftest import DOCS, build_tiny
from typer.testing import CliRunner

from neuronatlas.compare import (
    CompareError,
    cka,
    compare_atlases,
    load_comparison,
    stimulus_features,
)
from neuronatlas.errors import SiteError

RESID = ["encoder.layer.0", "encoder.layer.1"]


@pytest.fixture(scope="module")
def other_atlas(tmp_path_factory, tokenizer):
    """Another random BERT over the same documents (same tokenizer, so the same windows)."""
    return build_tiny(tmp_path_factory.mktemp("other") / "b", tokenizer, seed=1)


@pytest.fixture
def atlas_copy(tiny_atlas, tmp_path):
    import shutil

    shutil.copytree(tiny_atlas.path, tmp_path / "a")
    return tmp_path / "a"


def test_self_comparison_matrix_is_saved(atlas_copy):
    t = compare_atlases(atlas_copy, atlas_copy, sites_a=RESID, sites_b=RESID, n_boot=5, n_perm=5)
    assert list(t.columns) == ["site_a", "site_b", "layer_a", "layer_b", "value", "ci_low",
                               "ci_high", "p", "n_stimuli"]  # fmt: skip
    m = t.pivot(index="site_a", columns="site_b", values="value")
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-12)
    np.testing.assert_allclose(m.to_numpy(), m.to_numpy().T, atol=1e-12)
    x0 = stimulus_features(atlas_copy, RESID[0])
    x1 = stimulus_features(atlas_copy, RESID[1])
    assert float(m.loc[RESID[0], RESID[1]]) == pytest.approx(float(cka(x0, x1)), rel=1e-12)
    assert t["layer_a"].tolist() == [0, 0, 1, 1] and (t["n_stimuli"] == len(DOCS)).all()
    saved, entry = load_comparison(atlas_copy, "cka-self")
    pd.testing.assert_frame_equal(saved, t, check_dtype=False)
    assert entry["measure"] == "cka" and entry["alignment"]["n_shared"] == len(DOCS)
    manifest = json.loads((atlas_copy / "atlas.json").read_text())
    assert "compare/cka-self" in manifest["analyses"]


def test_two_atlases_aligned_by_source(atlas_copy, other_atlas):
    t = compare_atlases(atlas_copy, other_atlas.path, sites_a=RESID, sites_b=RESID,
                        measure="rsa", name="rsa-other")  # fmt: skip
    assert t.attrs["alignment"]["align"] == "source" and len(t) == 4
    assert ((t["value"] > -1) & (t["value"] < 1)).all()
    # a subset of stimuli, by doc id of the first atlas
    t2 = compare_atlases(atlas_copy, other_atlas.path, sites_a=RESID[:1], sites_b=RESID[:1],
                         stimuli=[0, 2, 4, 6, 8], save=False)  # fmt: skip
    assert int(t2["n_stimuli"].iloc[0]) == 5


def test_mismatched_stimuli_are_a_clear_error(atlas_copy, tmp_path, tokenizer):
    stranger = build_tiny(tmp_path / "c", tokenizer, docs=["Completely different text."] * 2)
    with pytest.raises(CompareError, match="share 0 stimuli"):
        compare_atlases(atlas_copy, stranger.path, align="source")
    with pytest.raises(CompareError, match="share 2 stimuli"):
        compare_atlases(atlas_copy, stranger.path, align="doc")


def test_layer_by_region_with_a_simulated_recording(atlas_copy):
    """A recording built from one site plus noise: that site scores highest."""
    g = torch.Generator().manual_seed(0)
    sites = ["encoder.layer.0", "encoder.layer.0.output.dense:input",
             "encoder.layer.1.output.dense:input"]  # fmt: skip
    src = stimulus_features(atlas_copy, sites[2])
    noise = torch.randn(len(DOCS), 20, generator=g)
    region = src @ torch.randn(src.shape[1], 20, generator=g) + 0.5 * noise
    t = compare_atlases(atlas_copy, {"V1": region.numpy()}, sites_a=sites,
                        stimuli=list(range(len(DOCS))), measure="cka", label="sim")  # fmt: skip
    assert t.loc[t["value"].idxmax(), "site_a"] == sites[2], t
    assert t["site_b"].unique().tolist() == ["V1"] and t["layer_b"].isna().all()
    with pytest.raises(CompareError, match="needs `stimuli`"):
        compare_atlases(atlas_copy, {"V1": region.numpy()})


def test_bad_sites_and_options(atlas_copy):
    with pytest.raises(SiteError, match="closest"):
        compare_atlases(atlas_copy, atlas_copy, sites_a=["encoder.layer.7"])
    with pytest.raises(CompareError, match="comparison must be one of"):
        compare_atlases(atlas_copy, atlas_copy, measure="rsa", comparison="pearson")


def test_cli_prints_and_saves(atlas_copy):
    from neuronatlas.cli import _verb_modules
    from neuronatlas.cli._app import app, load_verbs

    load_verbs(_verb_modules())
    res = CliRunner().invoke(app, ["compare", str(atlas_copy), str(atlas_copy), "--sites",
                                   "encoder.layer.?", "--measure", "rsa", "-o", "comparison=corr",
                                   "--bootstrap", "4", "--permutations", "4"],
                             catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "rsa on 10 shared stimuli" in res.output and "layer.1" in res.output
    assert (atlas_copy / "analyses/compare/rsa-self/matrix.parquet").is_file()
    res = CliRunner().invoke(app, ["compare", str(atlas_copy), str(atlas_copy), "-m", "ckaa"])
    assert res.exit_code == 2 and "Did you mean 'cka'" in res.output


def test_viewer_page_shows_the_heatmap(atlas_copy):
    from starlette.testclient import TestClient

    from neuronatlas.viewer import create_app

    with TestClient(create_app(atlas_copy), base_url="http://127.0.0.1") as c:
        assert c.get("/compare").status_code == 404  # no comparison yet: no page
        assert 'href="/compare"' not in c.get("/").text
    compare_atlases(atlas_copy, atlas_copy, sites_a=RESID, sites_b=RESID, n_boot=5, n_perm=5)
    with TestClient(create_app(atlas_copy), base_url="http://127.0.0.1") as c:
        html = c.get("/compare").text
        assert 'href="/compare"' in c.get("/").text
    assert html.count('<g class="cell"') == 4
    assert "encoder.layer.0 × encoder.layer.1: " in html and "95% CI" in html and "p = " in html


@pytest.mark.browser
def test_heatmap_in_a_real_browser_served_and_exported(atlas_copy, tmp_path):
    """The page renders without script errors in Chromium, over HTTP and from the static export;
    a cell's hover text holds the value, the interval and the p-value."""
    from pathlib import Path

    from neuronatlas.viewer import export_html, serve_in_thread

    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    compare_atlases(atlas_copy, atlas_copy, sites_a=RESID, sites_b=RESID, n_boot=5, n_perm=5)
    export_html(atlas_copy, tmp_path / "site")
    exported = sorted(p.name for p in (tmp_path / "site").rglob("compare*.html"))
    assert exported, "the static export has no compare page"
    problems: list[str] = []
    with sync_api.sync_playwright() as pw, serve_in_thread(atlas_copy) as url:
        browser = pw.chromium.launch(executable_path=str(chromium), headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            static = next((tmp_path / "site").rglob("compare*.html")).resolve().as_uri()
            for address in (url + "/compare", static):
                page.goto(address)
                cells = page.locator("svg.heatmap g.cell")
                assert cells.count() == 4
                tip = cells.nth(1).locator("title").text_content()
                assert re.fullmatch(
                    r"encoder\.layer\.0 × encoder\.layer\.1: \d\.\d{3} "
                    r"\(95% CI \d\.\d{3} – \d\.\d{3}\), p = 0\.\d+",
                    tip,
                ), tip
        finally:
            browser.close()
    assert problems == []


def test_model_against_a_brain_atlas(atlas_copy, tmp_path):
    """A brain atlas (trials of two regions, stimuli aligned to the model's docs): layer ×
    region; the region planted from one site is closest to it."""
    pytest.importorskip("neuronatlas.brain")
    from neuronatlas.brain import Recording, write_brain_atlas

    g = torch.Generator().manual_seed(1)
    sites = ["encoder.layer.0", "encoder.layer.1.output.dense:input"]
    src = stimulus_features(atlas_copy, sites[1]).double()
    n_rep, n = 3, len(DOCS)
    planted = src @ torch.randn(src.shape[1], 12, generator=g, dtype=torch.float64)
    other = torch.randn(n, 8, generator=g, dtype=torch.float64)
    trials = torch.cat([planted, other], 1).repeat(n_rep, 1)
    trials += 0.3 * trials.std() * torch.randn(trials.shape, generator=g, dtype=torch.float64)
    order = [7, 2, 9, 0, 4, 1, 8, 3, 6, 5]  # stimuli listed in another order than the docs
    rec = Recording(
        responses=trials.numpy()[np.tile(order, n_rep) + np.repeat(np.arange(n_rep), n) * n],
        trial_stimulus=np.tile(np.arange(n), n_rep),
        stimuli=pd.DataFrame({"name": [f"s{d}" for d in order], "doc": order}),
        units=pd.DataFrame({"site": ["IT"] * 12 + ["V1"] * 8}),
    )
    brain = write_brain_atlas(rec, tmp_path / "brain")
    t = compare_atlases(atlas_copy, brain, sites_a=sites, measure="cka")
    assert t.attrs["alignment"]["n_shared"] == n and set(t["site_b"]) == {"IT", "V1"}
    it = t[t.site_b == "IT"].set_index("site_a")["value"]
    assert it.idxmax() == sites[1] and it.max() > t[t.site_b == "V1"]["value"].max()
    # the same numbers as arrays aligned by hand
    by_doc = trials.float().double().reshape(n_rep, n, 20).mean(0).numpy()  # stored as float32
    means = {"IT": by_doc[:, :12], "V1": by_doc[:, 12:]}
    ref = compare_atlases(atlas_copy, means, sites_a=sites, stimuli=list(range(n)), save=False)
    np.testing.assert_allclose(t["value"], ref["value"], rtol=1e-6)


def test_page_of_a_comparison_without_intervals_or_p_values(atlas_copy):
    # no bootstrap and no permutations: the CI and p columns are NULL; the page still renders
    from starlette.testclient import TestClient

    from neuronatlas.viewer import create_app

    compare_atlases(atlas_copy, atlas_copy, sites_a=RESID, sites_b=RESID, name="plain")
    with TestClient(create_app(atlas_copy), base_url="http://127.0.0.1") as c:
        page = c.get("/compare")
    assert page.status_code == 200
    assert page.text.count('<g class="cell"') == 4
    assert "95% CI" not in page.text and "p = " not in page.text
