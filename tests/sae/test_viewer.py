"""An SAE site in the viewer, in a real Chromium: the unit table and unit pages with exemplars."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from sae._sae_util import SITE

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
SAE_SITE = f"{SITE}@sae:v"


@pytest.fixture(scope="module")
def sae_atlas(tiny_store_atlas: Path, tmp_path_factory) -> Path:
    from neuronatlas.sae import create_sae, map_sae, train_sae
    from neuronatlas.store import ActivationStore

    path = tmp_path_factory.mktemp("viewer") / "atlas"
    shutil.copytree(tiny_store_atlas, path)
    store = ActivationStore.open(path / "store")
    sae = train_sae(create_sae("topk", store.sites[SITE], 32, k=3), store, site=SITE,
                    batch_size=32, steps=10, lr=3e-3, device="cpu").sae  # fmt: skip
    map_sae(path, sae, name="v", site=SITE, device="cpu")
    return path


@pytest.fixture(scope="module")
def page(sae_atlas: Path) -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    from neuronatlas.viewer import serve_in_thread

    with serve_in_thread(sae_atlas) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        pg = browser.new_page()
        problems: list[str] = []
        pg.on("pageerror", lambda e: problems.append(str(e)))
        pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        pg.base = url  # type: ignore[attr-defined]
        yield pg
        browser.close()
        assert problems == [], problems


def test_sae_site_in_the_unit_table_and_unit_pages(page, sae_atlas):
    from neuronatlas import open_atlas

    atlas = open_atlas(sae_atlas)
    feature = int(
        atlas.query("select unit from units where site = ? order by max desc limit 1", [SAE_SITE])[
            "unit"
        ][0]
    )
    page.goto(f"{page.base}/units?site={quote(SAE_SITE)}&per_page=100")
    page.wait_for_function(
        "() => { const t = document.getElementById('result-count').textContent;"
        " return t.includes(' units') && !t.includes('Loading'); }"
    )
    rows = page.eval_on_selector_all(
        "#units-body tr",
        "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent.trim()))",
    )
    assert len(rows) == 32 and {r[0] for r in rows} == {SAE_SITE}
    assert SAE_SITE in page.inner_text("#f-site")

    page.goto(f"{page.base}/unit/{quote(SAE_SITE, safe='')}/{feature}")
    page.wait_for_selector("h1:has-text('Unit')")
    assert page.text_content("h1") == f"Unit {feature}"
    assert page.text_content(".site-name") == SAE_SITE
    exemplars = page.locator("ol.exemplars > li")
    assert exemplars.count() == 3
    top = atlas.exemplars(SAE_SITE, feature).iloc[0]
    assert f"{top['activation']:.3g}"[:4] in page.text_content("ol.exemplars")
    assert page.locator(".exemplars .ctx > .focus").count() == 3


def test_sae_panel_links_features_and_source_units(page, sae_atlas):
    from safetensors.numpy import load_file

    w = load_file(str(sae_atlas / "analyses" / "sae" / "v" / "sae_weights.safetensors"))
    page.goto(f"{page.base}/unit/{quote(SAE_SITE, safe='')}/5")
    panel = page.locator("#panel-sae")
    links = panel.locator("a.unit-link")
    assert links.count() == 8
    expected = np.argsort(-np.abs(w["W_dec"][5]), kind="stable")[:8]
    assert [int(t) for t in links.all_text_contents()] == expected.tolist()
    links.first.click()
    page.wait_for_selector("#panel-sae")
    assert page.text_content(".site-name") == SITE
    source_unit = int(expected[0])
    readers = np.argsort(-w["W_enc"][source_unit], kind="stable")[:8]
    assert [
        int(t) for t in page.locator("#panel-sae a.unit-link").all_text_contents()
    ] == readers.tolist()
