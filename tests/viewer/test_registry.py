"""The extension API: pages, unit panels, columns and unit tables added without editing pages."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient
from viewer._viewer_util import SITE0, table_rows

from neuronatlas.viewer import (
    RegistryError,
    ViewerRegistry,
    create_app,
    export_html,
    registry,
)
from neuronatlas.viewer._registry import Registry


def test_registry_refuses_duplicates_and_lists_keys():
    reg: Registry[int] = Registry("thing")
    reg.add("alpha", 1)
    with pytest.raises(RegistryError, match=r"already registered\. .* Known: alpha"):
        reg.add("alpha", 2)
    with pytest.raises(RegistryError, match="Did you mean 'alpha'"):
        reg["alpah"]
    assert reg.keys() == ["alpha"] and "alpha" in reg and list(reg) == [1]
    assert reg.remove("alpha") == 1 and len(reg) == 0


def test_builtins_are_registered_through_the_api():
    assert registry.pages.keys()[:3] == ["/", "/units", "/unit/{site}/{unit}"]
    builtin = ["stats", "distribution", "exemplars", "labels"]
    assert [p.name for p in registry.ordered_panels() if p.name in builtin] == builtin
    assert "abs_max" in registry.columns
    with pytest.raises(RegistryError, match="already registered"):
        registry.page("/units", title="Again")(lambda ctx: {})


def test_invalid_registrations():
    reg = ViewerRegistry()
    with pytest.raises(RegistryError, match="page path"):
        reg.page("units", title="x")(lambda ctx: {})
    with pytest.raises(RegistryError, match="page path"):
        reg.page("/a/../b", title="x")(lambda ctx: {})
    with pytest.raises(RegistryError, match="identifier"):
        reg.unit_panel("my panel", title="x", template="x.html")
    with pytest.raises(RegistryError, match="identifier"):
        reg.column("bad name", sql="1")
    with pytest.raises(RegistryError, match="inside the atlas folder"):
        reg.unit_table("t", "../elsewhere.parquet")


@pytest.fixture
def extended(atlas_path: Path, tmp_path: Path):
    """An atlas with an extra (site, unit) table, and a registry copy with one of everything."""
    atlas = tmp_path / "atlas"
    shutil.copytree(atlas_path, atlas)
    units = pq.read_table(atlas / "units.parquet", columns=["site", "unit"])
    scores = pa.array([float(u % 7) for u in units["unit"].to_pylist()])
    pq.write_table(units.append_column("sae_score", scores), atlas / "sae_units.parquet")

    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "example.html").write_text(
        '{% extends "base.html" %}{% block content %}<h1>Example</h1><p id="n">{{ n }} sites</p>'
        '<p id="echo">{{ echo }}</p>{% endblock %}'
    )
    (templates / "example_panel.html").write_text(
        '<p class="example">feature {{ p.feature }} of {{ ctx.unit }}</p>'
    )

    reg = registry.copy()

    @reg.page("/example", title="Example", template="example.html", order=50, templates=templates)
    def example(ctx):
        ctx.only("echo")
        return {"n": len(ctx.atlas.sites), "echo": " ".join(v for k, v in ctx.query if k == "echo")}

    @reg.page("/raw/{site}", title="Raw", export=False)
    def raw(ctx):
        return PlainTextResponse(f"site {ctx.params['site']}")

    @reg.unit_panel(
        "example",
        title="Example panel",
        template="example_panel.html",
        order=25,
        templates=templates,
    )
    def example_panel(ctx):
        return None if ctx.unit % 2 else {"feature": ctx.unit * 10}

    reg.column("double_max", sql='2 * "max"', requires=("max",), title="2 max", default=True)
    reg.column("needs_missing", sql='"nope" + 1', requires=("nope",))
    reg.unit_table("sae", "sae_units.parquet")
    reg.unit_table("absent", "not_there.parquet")
    return atlas, reg


def test_extensions_in_the_server(extended):
    atlas, reg = extended
    with TestClient(create_app(atlas, registry=reg), base_url="http://127.0.0.1") as c:
        home = c.get("/").text
        assert '<a href="/example">Example</a>' in home  # in the navigation bar
        page = c.get("/example", params={"echo": "<b>hi</b>"})
        assert page.status_code == 200 and '<p id="n">6 sites</p>' in page.text
        assert "&lt;b&gt;hi&lt;/b&gt;" in page.text  # autoescaped in extension templates too
        assert c.get("/example", params={"other": "1"}).status_code == 400
        assert c.get(f"/raw/{quote(SITE0, safe='')}").text == f"site {SITE0}"
        assert c.get("/raw/nope").status_code == 404  # {site} is validated for every page
        even = c.get(f"/unit/{quote(SITE0, safe='')}/4").text
        assert '<p class="example">feature 40 of 4</p>' in even
        assert (
            even.index('id="panel-distribution"')
            < even.index('id="panel-example"')
            < even.index('id="panel-exemplars"')
        )
        odd = c.get(f"/unit/{quote(SITE0, safe='')}/3").text
        assert 'id="panel-example"' not in odd  # the handler returned None
        head, _rows = table_rows(
            c.get("/units", params={"sort": "sae_score", "order": "desc"}).text
        )
        assert "2 max" in head
        r = c.get(
            "/api/units",
            params={
                "sort": "sae_score",
                "order": "desc",
                "col": ["unit", "sae_score", "double_max", "max"],
            },
        )
        body = r.json()
        assert all(row["sae_score"] == 6.0 for row in body["rows"][:5])
        assert all(row["double_max"] == pytest.approx(2 * row["max"]) for row in body["rows"])
        assert c.get("/units", params={"range": "sae_score:6:"}).status_code == 200
        assert c.get("/units", params={"sort": "needs_missing"}).status_code == 400  # left out


def test_extensions_in_the_static_export(extended, tmp_path):
    atlas, reg = extended
    out = tmp_path / "site"
    export_html(atlas, out, registry=reg, sites=[SITE0])
    assert (out / "example.html").exists()
    assert not (out / "raw").exists()
    unit4 = next((out / "unit").glob("0-*")) / "4.html"
    assert '<p class="example">feature 40 of 4</p>' in unit4.read_text()
    assert 'href="example.html"' in (out / "index.html").read_text()


def test_unit_table_with_repeated_keys_is_refused(extended):
    from neuronatlas.viewer import ViewerAtlas, ViewerError

    atlas, reg = extended
    table = pq.read_table(atlas / "sae_units.parquet")
    pq.write_table(pa.concat_tables([table, table.slice(0, 3)]), atlas / "sae_units.parquet")
    with pytest.raises(ViewerError, match="repeated"):
        ViewerAtlas(atlas, columns=list(reg.columns), unit_tables=list(reg.tables))


def test_pages_show_only_for_atlases_that_hold_their_data(extended, tmp_path):
    atlas, reg = extended
    (tmp_path / "templates" / "optional.html").write_text(
        '{% extends "base.html" %}{% block content %}<h1 id="probes">Probes</h1>{% endblock %}'
    )

    def has_probes(view) -> bool:
        return (view.path / "probes.parquet").exists()

    reg.page(
        "/optional",
        title="Optional",
        template="optional.html",
        templates=tmp_path / "templates",
        available=has_probes,
    )(lambda ctx: {})
    with TestClient(create_app(atlas, registry=reg), base_url="http://127.0.0.1") as c:
        assert '<a href="/optional">' not in c.get("/").text
        missing = c.get("/optional")
        assert missing.status_code == 404 and "/example" in missing.text
    out = tmp_path / "without"
    export_html(atlas, out, registry=reg, sites=[SITE0])
    assert not (out / "optional.html").exists()

    (atlas / "probes.parquet").write_bytes(b"")
    with TestClient(create_app(atlas, registry=reg), base_url="http://127.0.0.1") as c:
        assert '<a href="/optional">Optional</a>' in c.get("/").text
        assert 'id="probes"' in c.get("/optional").text
    out = tmp_path / "with"
    export_html(atlas, out, registry=reg, sites=[SITE0])
    assert (out / "optional.html").exists()
