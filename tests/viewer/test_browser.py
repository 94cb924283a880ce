"""The viewer in a real Chromium: served over HTTP and opened from file:// as a static export.

Every check runs in both modes. The ``page`` fixture fails a test on any dialog (an ``alert``
from injected script), page error or console error (CSP violations are console errors).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from viewer._viewer_util import N_UNITS, SITE0, table_rows

pytestmark = pytest.mark.browser

MODES = ("server", "static")
HOSTILE_UNIT = 1  # detects the hostile tokens
NAN_UNIT = N_UNITS - 1  # has NaN context slots


class Site:
    """URLs of one mode: the live server or the static export on disk."""

    def __init__(self, mode: str, server_url: str, export_dir: Path) -> None:
        self.mode = mode
        self.server_url = server_url
        self.root = export_dir.resolve().as_uri()

    def overview(self) -> str:
        return self.server_url + "/" if self.mode == "server" else self.root + "/index.html"

    def units(self, query: str = "") -> str:
        if self.mode == "server":
            return self.server_url + "/units" + (f"?{query}" if query else "")
        return self.root + "/units.html" + (f"#{query}" if query else "")

    def unit(self, site: str, unit: int) -> str:
        if self.mode == "server":
            return f"{self.server_url}/unit/{quote(site, safe='')}/{unit}"
        assert site == SITE0, "the static paths below are those of the first site"
        return f"{self.root}/unit/0-encoder.layer.0.output.dense_input/{unit}.html"

    def unit_pattern(self, unit: int) -> re.Pattern:
        if self.mode == "server":
            return re.compile(rf".*/unit/{re.escape(quote(SITE0, safe=''))}/{unit}$")
        return re.compile(rf".*/0-encoder\.layer\.0\.output\.dense_input/{unit}\.html$")


@pytest.fixture(params=MODES)
def site(request, server_url: str, export_dir: Path) -> Site:
    return Site(request.param, server_url, export_dir)


def rows_of(page) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#units-body tr",
        "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent.trim()))",
    )


def wait_table(page) -> None:
    page.wait_for_function(
        "() => { const t = document.getElementById('result-count').textContent;"
        " return t.includes(' units') && !t.includes('Loading'); }"
    )


def test_overview(page, site):
    page.goto(site.overview())
    assert page.title().startswith("Overview")
    assert page.locator("svg.chart").count() >= 6
    assert page.locator("table.sites tbody tr").count() == 6
    page.click("nav.mainnav >> text=Units")
    wait_table(page)
    assert len(rows_of(page)) == 50


def test_filter_sort_and_page_the_table(page, site):
    page.goto(site.units())
    wait_table(page)
    with page.expect_navigation() if site.mode == "server" else _nothing():
        page.select_option("#f-site", SITE0)  # selects submit on change
    wait_table(page)
    page.wait_for_function("() => document.querySelectorAll('#units-body tr').length === 24")
    assert {r[0] for r in rows_of(page)} == {SITE0}
    page.select_option("#f-rcol", "frac_active")
    page.fill("#f-rlo", "0.2")
    with page.expect_navigation() if site.mode == "server" else _nothing():
        page.click("button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('.chip').length === 2")
    wait_table(page)
    active = [float(r[5]) for r in rows_of(page)]
    assert active and all(a >= 0.2 for a in active)
    with page.expect_navigation() if site.mode == "server" else _nothing():
        page.click("#units-head th >> text=max")
    page.wait_for_function("() => document.querySelector('th[aria-sort]') !== null")
    maxes = [float(r[4]) for r in rows_of(page)]
    assert maxes == sorted(maxes, reverse=True)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "f-q"
    first = rows_of(page)[0]
    page.click("#units-body a.unit-link >> nth=0")  # open a unit from the table
    page.wait_for_selector("h1:has-text('Unit')")
    assert (
        page.text_content("h1") == f"Unit {first[1]}"
        and page.text_content(".site-name") == first[0]
    )


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


QUERIES = [
    "sort=max&order=desc&per_page=25",
    "label=token&sort=kurtosis&order=asc",
    "q=layer.1&range=frac_active%3A0.1%3A0.6&sort=top_token&order=asc&page=2&per_page=7",
    "site=encoder.layer.2&label=%21dead&sort=count&order=desc&per_page=100",
]


@pytest.mark.parametrize("query", QUERIES)
def test_static_table_matches_the_server(page, client, export_dir, query):
    """The browser-side table of the export shows exactly the server's rows and cells."""
    head, expected = table_rows(client.get("/units?" + query).text)
    page.goto((export_dir.resolve() / "units.html").as_uri() + "#" + query)
    wait_table(page)
    assert (
        page.eval_on_selector_all("#units-head th", "ths => ths.map(t => t.textContent.trim())")
        == head
    )
    assert rows_of(page) == expected
    served = client.get("/units?" + query).text
    count = re.search(r'id="result-count">\s*(.*?)\s*</p>', served, re.S).group(1)
    assert page.text_content("#result-count").strip() == re.sub(r"\s+", " ", count)


def test_unit_page_shading_and_hover(page, site):
    page.goto(site.unit(SITE0, 3))
    tokens = page.eval_on_selector_all(
        ".exemplars .ctx > span",
        "els => els.map(e => [e.className, getComputedStyle(e).backgroundColor, e.getAttribute('title')])",
    )
    assert len(tokens) > 20

    def alpha(color: str) -> float:
        parts = re.findall(r"[\d.]+", color)
        return float(parts[3]) if len(parts) == 4 else (0.0 if color == "rgba(0, 0, 0, 0)" else 1.0)

    shaded = []
    for _cls, color, title in tokens:
        value = title
        if value == "not recorded":
            continue
        act = float(value)
        shaded.append((act, alpha(color), color))
    positive = sorted((a, al) for a, al, _ in shaded if a > 0)
    alphas = [al for _, al in positive]
    assert alphas == sorted(alphas)  # more activation, more color
    strongest = max(shaded)
    weakest = min((s for s in shaded if s[0] > 0), key=lambda s: s[0])
    assert strongest[2] != weakest[2] and strongest[1] > 0.6
    negatives = {c for a, _, c in shaded if a < -0.05 * strongest[0]}
    assert all("37, 99, 235" in c for c in negatives)  # negative activations are blue
    page.hover(".ctx > .focus >> nth=0")
    focus_title = page.get_attribute(".ctx > .focus >> nth=0", "title")
    readout = page.text_content("#readout")
    meta_pos = re.search(r"pos (\d+)", page.text_content(".ex >> nth=0 >> .ex-meta")).group(1)
    assert focus_title in readout and f"pos {meta_pos} " in readout


def test_histogram_scale_and_readout(page, site):
    page.goto(site.unit(SITE0, 3))
    assert page.is_visible(".hv.log") and not page.is_visible(".hv.linear")
    page.click("button[data-hist=linear]")
    assert page.is_visible(".hv.linear") and not page.is_visible(".hv.log")
    assert page.get_attribute("button[data-hist=linear]", "aria-pressed") == "true"
    box = page.locator("svg.hist-svg").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.12, box["y"] + box["height"] / 2)
    assert re.fullmatch(r"\[[-0-9.e+]+, [-0-9.e+]+\): [\d,]+", page.text_content(".hist-readout"))


def test_nan_slots_are_unshaded(page, site):
    page.goto(site.unit(SITE0, NAN_UNIT))
    na = page.eval_on_selector_all(
        ".exemplars .ctx > .na", "els => els.map(e => getComputedStyle(e).backgroundColor)"
    )
    assert na and set(na) == {"rgba(0, 0, 0, 0)"}


def test_keyboard_navigation(page, site):
    page.goto(site.unit(SITE0, 5))
    page.keyboard.press("j")
    page.wait_for_url(site.unit_pattern(6))
    page.keyboard.press("ArrowRight")
    page.wait_for_url(site.unit_pattern(7))
    page.keyboard.press("k")
    page.wait_for_url(site.unit_pattern(6))
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(site.unit_pattern(5))
    page.keyboard.press("u")
    wait_table(page)
    assert {r[0] for r in rows_of(page)} == {SITE0}


def test_hostile_corpus_text_stays_text(page, site):
    page.goto(site.unit(SITE0, HOSTILE_UNIT))
    text = page.text_content("ol.exemplars")
    assert any(
        t in text
        for t in (
            "<script>alert(1)</script>",
            '" onmouseover="alert(1)',
            "<img src=x onerror=alert(1)>",
        )
    )
    assert page.locator("main script, main img, .ctx *[onmouseover], .ctx *[onerror]").count() == 0
    for token in page.locator(".ctx > .focus").all()[:4]:
        token.hover()  # an injected handler would fire here (the fixture fails on any dialog)
    assert page.text_content(".fact.token .fact-value") in (
        "<script>alert(1)</script>",
        '" onmouseover="alert(1)',
        "<img src=x onerror=alert(1)>",
        "&amp;&lt;b&gt;",
    )
    page.goto(site.units("q=alert&per_page=500"))
    wait_table(page)
    chips = page.eval_on_selector_all("#units-body .tok-chip", "els => els.map(e => e.textContent)")
    assert any("alert(1)" in c for c in chips)
    assert page.locator("#units-body script, #units-body img").count() == 0
