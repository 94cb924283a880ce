"""The /steer viewer page: heat-maps of site x coefficient, hidden without steering results."""

from __future__ import annotations

import pandas as pd
import pytest

from neuronatlas.steer import save_sweep
from neuronatlas.viewer import create_app, export_html, serve_in_thread, write_synthetic_atlas

HOSTILE = "<script>alert(1)</script>"


def sweep_table() -> pd.DataFrame:
    rows = []
    for layer in range(3):
        for c in (-2.0, 0.0, 2.0, 4.0):
            rows.append({
                "site": f"transformer.h.{layer}", "layer": layer, "method": "caa", "coef": c,
                "behaviour": 0.1 * layer * c, "behaviour_base": 0.0, "ppl": 10 + abs(c), "ppl_base": 10.0,
                "ppl_ratio": (10 + abs(c)) / 10, "kl": 0.01 * c * c, "n_tokens": 50, "n_nonfinite": 0,
            })  # fmt: skip
    rows[5]["kl"] = float("nan")
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def steer_atlas(tmp_path_factory):
    atlas = write_synthetic_atlas(tmp_path_factory.mktemp("steer") / "atlas", n_layers=1, n_units=4)
    save_sweep(atlas, "case", sweep_table(), behaviour=HOSTILE)
    return atlas


@pytest.fixture(scope="module")
def client(steer_atlas):
    from starlette.testclient import TestClient

    with TestClient(create_app(steer_atlas), base_url="http://127.0.0.1") as c:
        yield c


def test_page_has_three_heat_maps_and_the_table(client):
    r = client.get("/steer")
    assert r.status_code == 200
    html = r.text
    assert html.count('<svg class="heatmap"') == 3
    assert html.count("<rect") - 3 == 3 * 3 * 4  # one frame per chart + 3 sites x 4 coefs each
    assert HOSTILE not in html and "&lt;script&gt;" in html
    assert html.count("<tr>") == 1 + 12
    assert 'href="/steer"' in client.get("/").text
    assert client.get("/steer?x=1").status_code == 400


def test_hidden_for_atlases_without_steering(tmp_path):
    from starlette.testclient import TestClient

    plain = write_synthetic_atlas(tmp_path / "plain", n_layers=1, n_units=4)
    with TestClient(create_app(plain), base_url="http://127.0.0.1") as c:
        assert c.get("/steer").status_code == 404
        assert 'href="/steer"' not in c.get("/").text


def test_static_export(steer_atlas, tmp_path):
    export_html(steer_atlas, tmp_path / "site")
    assert (tmp_path / "site" / "steer.html").read_text().count('<svg class="heatmap"') == 3


@pytest.mark.browser
def test_in_chromium(steer_atlas):
    from viewer._viewer_util import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    problems: list[str] = []
    with serve_in_thread(steer_atlas) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda d: (problems.append(d.message), d.dismiss()))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(url + "/steer")
        assert page.locator("svg.heatmap").count() == 3
        assert page.locator("#steer-case svg.heatmap").first.locator("rect").count() == 1 + 12
        assert HOSTILE in page.locator("#steer-case").inner_text()  # shown as text, not run
        browser.close()
    assert problems == []
