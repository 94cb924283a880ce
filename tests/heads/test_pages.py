"""Head scores in an atlas and in the viewer: files, pages, static export, a real browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from heads.conftest import planted_model

from neuronatlas.atlas import list_analyses
from neuronatlas.heads._atlas import score_atlas
from neuronatlas.viewer import create_app, export_html, serve_in_thread, write_synthetic_atlas

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def heads_atlas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    atlas = write_synthetic_atlas(tmp_path_factory.mktemp("heads") / "atlas", n_layers=1, n_units=4)
    score_atlas(
        atlas, planted_model(), n_seq=8, seg_len=12, needle_len=4, haystack_len=20,
        texts=[[1, 2, 3, 4, 5, 6]] * 4,
    )  # fmt: skip
    prompts = atlas / "analyses/heads/scores/prompts.parquet"
    df = pd.read_parquet(prompts)
    df.loc[df.index[3], "token"] = HOSTILE  # corpus text is untrusted: it must show as text
    df.to_parquet(prompts, index=False)
    return atlas


@pytest.fixture(scope="module")
def client(heads_atlas: Path) -> Iterator:
    from starlette.testclient import TestClient

    with TestClient(create_app(heads_atlas), base_url="http://127.0.0.1") as c:
        yield c


def test_files_and_manifest(heads_atlas):
    (entry,) = list_analyses(heads_atlas, "heads")
    assert entry["n_heads"] == 4 and entry["heads_per_layer"] == [2, 2]
    folder = heads_atlas / entry["path"]
    scores = pd.read_parquet(folder / "scores.parquet")
    assert list(scores.columns[:3]) == ["site", "layer", "head"]
    assert len(scores) == 4
    pat = pd.read_parquet(folder / "patterns.parquet")
    assert set(pat.columns) == {"prompt", "layer", "head", "q", "k", "weight"}
    # rows of every (prompt, layer, head) sum to ~1 (weights < 1e-4 left out)
    sums = pat.groupby(["prompt", "layer", "head", "q"])["weight"].sum()
    assert sums.between(0.99, 1.0 + 1e-5).all()


def test_heads_page_has_one_heat_map_per_score(client):
    r = client.get("/heads/scores")
    assert r.status_code == 200
    for score in ("previous_token", "induction", "retrieval", "sink", "copying"):
        assert f'id="score-{score}"' in r.text
    n_maps = r.text.count('class="chart heatmap"')
    assert r.text.count("<rect") == n_maps * 4  # 2 layers x 2 heads per map
    assert "L1H0 (0.9" in r.text  # the induction head tops the induction map


def test_attention_page_and_bad_parameters(client):
    r = client.get("/heads/attention/scores/0/1")
    assert r.status_code == 200
    assert 'id="head-0"' in r.text and 'id="head-1"' in r.text
    for bad in ("/heads/attention/scores/99/0", "/heads/attention/scores/0/7",
                "/heads/attention/nope/0/0", "/heads/attention/scores/x/0"):  # fmt: skip
        assert client.get(bad).status_code == 404, bad
    assert client.get("/heads/scores", params={"x": "1"}).status_code == 400


def test_patching_grid_in_the_atlas_and_page(tmp_path):
    import torch
    from starlette.testclient import TestClient

    from neuronatlas.heads import add_patching, patch_heads
    from neuronatlas.heads._atlas import add_patching as _same

    assert add_patching is _same
    atlas = write_synthetic_atlas(tmp_path / "atlas", n_layers=1, n_units=4)
    model = planted_model()
    seg = torch.arange(3, 13)
    clean = torch.cat([seg, seg])[None]
    corrupt = clean.clone()
    corrupt[0, :10] = torch.arange(20, 30)  # the first copy is gone
    answer = int(clean[0, 16])  # what position 15 predicts, by induction
    grid = patch_heads(
        model, lambda: model(clean), lambda: model(corrupt), lambda out: float(out[0, 15, answer])
    )
    add_patching(atlas, grid, tokens=[str(int(t)) for t in clean[0]], description="planted")
    with TestClient(create_app(atlas), base_url="http://127.0.0.1") as c:
        r = c.get("/heads/scores")
    assert r.status_code == 200
    assert 'id="patching-patching-layer-0"' in r.text and 'id="patching-patching-layer-1"' in r.text
    # the induction head at the query position restores the answer
    assert "Largest: L1H0 at position 15" in r.text
    with pytest.raises(Exception, match="needs the columns"):
        add_patching(atlas, pd.DataFrame({"layer": [0]}))


def test_hidden_for_atlases_without_head_scores(tmp_path):
    from starlette.testclient import TestClient

    plain = write_synthetic_atlas(tmp_path / "plain", n_layers=1, n_units=4)
    with TestClient(create_app(plain), base_url="http://127.0.0.1") as c:
        assert c.get("/heads/scores").status_code == 404
        assert 'href="/heads/scores"' not in c.get("/").text


def test_static_export_writes_the_pages(heads_atlas, tmp_path):
    out = tmp_path / "site"
    export_html(heads_atlas, out)
    assert (out / "heads/scores.html").is_file()
    pages = sorted(p.name for p in (out / "heads/attention/scores").rglob("*.html"))
    assert len(pages) == 3 * 2  # 3 prompts x 2 layers
    html = (out / "heads/scores.html").read_text()
    assert re.search(r'href="attention/scores/0/1\.html#head-0"', html)


@pytest.mark.browser
def test_in_chromium(heads_atlas):
    from viewer._viewer_util import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    problems: list[str] = []
    with serve_in_thread(heads_atlas) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda d: (problems.append(d.message), d.dismiss()))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(url + "/heads/scores")
        assert page.locator("svg.heatmap").count() >= 8
        page.locator("#score-induction svg.heatmap a").nth(2).click()  # L1H0
        page.wait_for_url(re.compile(r"/heads/attention/scores/0/1"))
        # prompt 0 has 6 tokens; a causal model attends to 6 * 7 / 2 = 21 (q, k) pairs, the
        # others (weight 0) are left to the background rect
        assert page.locator("#head-0 svg.heatmap rect").count() == 1 + 21
        page.goto(url + "/heads/attention/scores/0/0")
        assert HOSTILE in page.locator("main p.mono").inner_text()  # shown as text, not run
        browser.close()
    assert problems == []
