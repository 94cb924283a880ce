"""Rendering helpers: number format, shading, links, SVG charts."""

from __future__ import annotations

import itertools
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from viewer._viewer_util import SITE0

from neuronatlas.viewer import Links, ViewerAtlas
from neuronatlas.viewer._atlas import ContextToken, Exemplar
from neuronatlas.viewer._columns import fmt_value
from neuronatlas.viewer._render import LEVELS, render_context, shade_class, static_path
from neuronatlas.viewer._svg import band_chart, bar_chart, histogram, nice_ticks, scatter


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        (0.0123456, "float", "0.01235"),
        (-1234.5678, "float", "-1235"),
        (9999.7, "float", "1.00e+4"),
        (123456.0, "float", "1.23e+5"),
        (-0.00012345, "float", "-1.23e-4"),
        (0.0, "float", "0"),
        (float("nan"), "float", "NaN"),
        (float("-inf"), "float", "-∞"),
        (None, "float", "—"),
        (1234567, "int", "1,234,567"),
        (True, "bool", "✓"),
        (False, "bool", ""),
        ("x", "str", "x"),
    ],
)
def test_fmt_value(value, kind, text):
    assert fmt_value(value, kind) == text


def test_units_js_formats_like_python():
    """The static table formats numbers with the same rules (checked on the source)."""
    from neuronatlas.viewer._render import STATIC

    js = (STATIC / "units.js").read_text()
    assert "toExponential(2)" in js and "toPrecision(4)" in js and "a >= 1e-3 && a < 1e4" in js


@settings(max_examples=60, deadline=None)
@given(st.floats(-1e3, 1e3), st.floats(1e-3, 1e3))
def test_shade_levels(act, scale):
    cls = shade_class(act, scale)
    level = min(LEVELS, round(abs(act) / scale * LEVELS))
    if level == 0:
        assert cls == ""
    else:
        assert cls == ("p" if act > 0 else "n") + str(level)
    assert shade_class(None, scale) == "na" and shade_class(math.nan, scale) == "na"


def test_render_context_escapes_and_marks():
    tokens = (
        ContextToken(3, "<script>alert(1)</script>", "<script>alert(1)</script>", 2.0, focus=True),
        ContextToken(4, '" onmouseover="x', '" onmouseover="x', -1.0),
        ContextToken(5, "&amp;", "&amp;", None),
        ContextToken(6, "", "", 0.0),
    )
    html = str(render_context(Exemplar(0, 2.0, 1, 3, "t", tokens), scale=2.0))
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '" onmouseover' not in html and "&#34; onmouseover=&#34;x" in html
    assert "&amp;amp;" in html
    assert '<span class="p12 focus" title="2">' in html and '<span class="n6" title="-1">' in html
    assert '<span class="na" title="not recorded">' in html
    assert "&#8203;" in html  # an empty token keeps a hoverable box


def test_links_server_and_static(atlas_path):
    atlas = ViewerAtlas(atlas_path)
    server = Links(atlas)
    assert server.unit(SITE0, 3) == "/unit/encoder.layer.0.output.dense%3Ainput/3"
    assert (
        server.units([("site", SITE0), ("q", "a b&c")])
        == "/units?site=encoder.layer.0.output.dense%3Ainput&q=a+b%26c"
    )
    assert server.asset("app.css") == "/static/app.css"
    here = static_path("/unit/{site}/{unit}", {"site": SITE0, "unit": 3}, atlas)
    assert here == "unit/0-encoder.layer.0.output.dense_input/3.html"
    static = Links(atlas, static=True, here=here, exported_sites=[SITE0])
    assert static.unit(SITE0, 4) == "4.html"
    assert static.unit("encoder.layer.0", 0) is None  # not exported
    assert (
        static.units([("site", SITE0)])
        == "../../units.html#site=encoder.layer.0.output.dense%3Ainput"
    )
    assert (
        static.page("/") == "../../index.html" and static.asset("app.js") == "../../static/app.js"
    )


@settings(max_examples=60, deadline=None)
@given(st.floats(-1e6, 1e6), st.floats(1e-6, 1e6))
def test_nice_ticks_cover_the_range(lo, width):
    hi = lo + width
    ticks = nice_ticks(lo, hi)
    assert ticks[0] <= lo + 1e-9 * max(1.0, abs(lo)) and ticks[-1] >= hi - 1e-9 * max(1.0, abs(hi))
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(ticks) <= 13 and len({round(s / max(steps), 6) for s in steps}) == 1


def test_charts_escape_text_and_draw_every_bin():
    evil = "<b>site</b>"
    svg = str(band_chart([evil], [evil], [(0.1, 0.2, 0.3, 0.4, 0.5)], y_label="y<"))
    assert "<b>" not in svg and "&lt;b&gt;site&lt;/b&gt;" in svg and "y&lt;" in svg
    hist = str(histogram([0.0, 1.0, 2.0, 3.0], [5, 0, 2], markers=[(1.5, "p50")]))
    assert len(re.findall(r"M[\d.]+ [\d.]+V", hist)) == 2 * 2  # 2 non-empty bins x (log, linear)
    assert 'data-edges="0 1 2 3" data-counts="5 0 2"' in hist and "p50" in hist
    wide = str(histogram([i / 10 for i in range(257)], [1] * 256, max_bins=80))
    counts = re.search(r'data-counts="([^"]+)"', wide).group(1).split()
    assert len(counts) <= 80 and sum(map(int, counts)) == 256
    bars = str(
        bar_chart(["0", "1"], ["a", "b"], {"dead": [1, 2], "token": [0, 3]}, y_label="units")
    )
    assert bars.count("<rect x=") >= 3 and "dead" in bars
    pts = str(
        scatter(
            [(0.0, 1.0, 0), (1.0, 2.0, 1)],
            ["layer 0", "layer 1"],
            x_label="mean",
            y_label="std",
            log_y=True,
        )
    )
    assert pts.count("<circle") == 4  # 2 points + 2 legend dots
    assert "No histogram" in str(histogram([], []))
