"""The static export: files, relative links, data shards, and its safety checks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from viewer._viewer_util import N_UNITS, SITE0, ref_sql

from neuronatlas.errors import AtlasExistsError
from neuronatlas.viewer import BadRequestError, ViewerAtlas, export_html


def test_layout(export_dir: Path, atlas_path: Path):
    atlas = ViewerAtlas(atlas_path)
    assert (export_dir / "index.html").exists() and (export_dir / "units.html").exists()
    assert {p.name for p in (export_dir / "static").iterdir()} >= {
        "app.css",
        "app.js",
        "units.js",
        "favicon.svg",
    }
    unit_pages = list((export_dir / "unit").rglob("*.html"))
    assert len(unit_pages) == atlas.n_units == 6 * N_UNITS
    assert len(list((export_dir / "data").glob("units-*.js"))) == len(atlas.sites)
    assert (export_dir / "unit" / "0-encoder.layer.0.output.dense_input" / "5.html").exists()


def test_every_link_resolves(export_dir: Path):
    """Every href/src in the export points at a file of the export (no server, no network)."""
    pages = [
        export_dir / "index.html",
        export_dir / "units.html",
        *sorted((export_dir / "unit").rglob("*.html"))[:40],
    ]
    for page in pages:
        html = page.read_text()
        assert "http://" not in html and "https://" not in html
        for url in re.findall(r'(?:href|src)="([^"]*)"', html):
            if url.startswith("#"):
                continue
            path = unquote(urlsplit(url).path)
            assert not path.startswith("/"), (page, url)
            assert (page.parent / path).resolve().is_file(), (page, url)


def test_unit_pages_match_the_server(export_dir: Path, client):
    """The exported unit page shows the same panels and exemplars as the served one."""
    static = (export_dir / "unit" / "0-encoder.layer.0.output.dense_input" / "1.html").read_text()
    served = client.get(f"/unit/{SITE0.replace(':', '%3A')}/1").text
    strip = lambda html: re.sub(r'(href|src)="[^"]*"', "", html.split("<main", 1)[1])  # noqa: E731
    assert strip(static) == strip(served)
    assert "Content-Security-Policy" in static and "script-src 'self'" in static


def test_shards_hold_the_unit_table(export_dir: Path, atlas_path: Path):
    text = (export_dir / "data" / "units-0.js").read_text()
    assert text.startswith("(window.NeuronAtlasShards = window.NeuronAtlasShards || {})[0] = ")
    body = json.loads(text[text.index("] = ") + 4 : text.rindex(";")])
    ref = ref_sql(
        f"select unit, max, top_token, label_dead from '{atlas_path}/units.parquet' where site = ? order by unit",
        [SITE0],
    )
    assert body["n"] == N_UNITS
    assert body["values"]["unit"] == [r[0] for r in ref]
    assert body["values"]["max"] == pytest.approx([r[1] for r in ref], rel=1e-6)
    assert body["values"]["top_token"] == [r[2] for r in ref]
    assert body["values"]["label_dead"] == [int(r[3]) for r in ref]
    meta = re.search(
        r'<script type="application/json" id="units-meta">(.*?)</script>',
        (export_dir / "units.html").read_text(),
    )
    parsed = json.loads(meta.group(1))
    assert parsed["n_units"] == 6 * N_UNITS and parsed["sites"][0]["name"] == SITE0
    assert "<" not in meta.group(1)  # JSON in HTML is escaped (no '</script>' break-out)


def test_site_subset_and_refusals(atlas_path: Path, tmp_path: Path):
    out = tmp_path / "part"
    report = export_html(atlas_path, out, sites=["encoder.layer.1.*"])
    assert report.sites == ("encoder.layer.1.output.dense:input",)
    assert report.n_pages == N_UNITS + 2
    first = out / "unit" / "2-encoder.layer.1.output.dense_input" / "0.html"
    assert (
        'id="prev-unit"' not in first.read_text()
    )  # the previous site is not exported: no dead link
    with pytest.raises(AtlasExistsError, match="previous export"):
        export_html(atlas_path, out, sites=["encoder.layer.1.*"])
    export_html(atlas_path, out, sites=["encoder.layer.2"], overwrite=True)
    assert not (out / "unit" / "2-encoder.layer.1.output.dense_input").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(AtlasExistsError, match="not empty"):
        export_html(atlas_path, other, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(BadRequestError, match="No site matches"):
        export_html(atlas_path, tmp_path / "none", sites=["decoder.*"])
