"""The probes page: present only with probe or concept analyses, all four kinds drawn, a browser."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from neuronatlas.concepts import concepts_atlas, net2vec_atlas, probe_atlas, sparse_probe_atlas
from neuronatlas.viewer import create_app, export_html, serve_in_thread

SITE = "encoder.layer.1.output.dense:input"
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def probed(tiny_atlas, tmp_path_factory) -> Path:
    atlas = tmp_path_factory.mktemp("pages") / "atlas"
    shutil.copytree(tiny_atlas, atlas)
    probe_atlas(atlas, "code", sites=SITE, max_rows=300, grid=[1.0], folds=2)
    sparse_probe_atlas(atlas, "code", sites=SITE, ks=(1, 2, 4), n_candidates=2, max_rows=300)
    net2vec_atlas(atlas, "code", sites=SITE, max_rows=300)
    _, top, _ = concepts_atlas(atlas, SITE, n_concepts=2, batch_size=64, top_k=3)
    tokens = pd.read_parquet(atlas / "tokens.parquet")
    hit = (tokens["doc"] == top["doc"].iloc[0]) & (tokens["pos"] == top["pos"].iloc[0])
    tokens.loc[hit, "token"] = HOSTILE  # corpus text is untrusted
    tokens.to_parquet(atlas / "tokens.parquet", index=False)
    return atlas


@pytest.fixture(scope="module")
def client(probed) -> Iterator:
    from starlette.testclient import TestClient

    with TestClient(create_app(probed), base_url="http://127.0.0.1") as c:
        yield c


def test_page_draws_every_analysis(client):
    r = client.get("/probes")
    assert r.status_code == 200
    for key in ("probes-code", "probes-code-sparse", "probes-code-net2vec", "concepts-nmf-2-"):
        assert f'id="analysis-{key}' in r.text
    assert r.text.count("<svg") >= 3
    assert "selectivity" in r.text and "k=4" in r.text
    assert HOSTILE not in r.text and "&lt;script&gt;" in r.text
    assert 'href="/probes"' in client.get("/").text
    assert client.get("/probes", params={"x": "1"}).status_code == 400


def test_hidden_without_analyses(tiny_atlas, tmp_path):
    from starlette.testclient import TestClient

    plain = tmp_path / "plain"
    shutil.copytree(tiny_atlas, plain)
    import json

    manifest = json.loads((plain / "atlas.json").read_text())
    manifest.pop("analyses", None)
    (plain / "atlas.json").write_text(json.dumps(manifest))
    with TestClient(create_app(plain), base_url="http://127.0.0.1") as c:
        assert c.get("/probes").status_code == 404


def test_static_export(probed, tmp_path):
    export_html(probed, tmp_path / "site")
    html = (tmp_path / "site" / "probes.html").read_text()
    assert 'id="analysis-probes-code-sparse"' in html


@pytest.mark.browser
def test_in_chromium(probed):
    from viewer._viewer_util import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    problems: list[str] = []
    with serve_in_thread(probed) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda d: (problems.append(d.message), d.dismiss()))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(url + "/probes")
        assert page.locator("section.card svg").count() >= 3
        assert HOSTILE in page.locator("main").inner_text()  # shown as text, not run
        browser.close()
    assert problems == []
