"""The web app over HTTP: pages, filters, sorting, pagination, errors, security."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from viewer._viewer_util import N_UNITS, SITE0, ref_sql, table_rows

from neuronatlas.viewer import ViewerAtlas, create_app


def unit_url(site: str, unit: int) -> str:
    return f"/unit/{quote(site, safe='')}/{unit}"


def test_overview(client, atlas_path):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "synthetic-bert-3L" in html
    assert html.count('<svg class="chart"') >= 6  # 5 statistics + labels + scatter
    for site in ViewerAtlas(atlas_path).sites:
        assert f'href="/units?site={quote(site.name, safe="")}"' in html
    assert "Non-finite activations" in html  # the NaN unit is reported


def test_units_table_default_page(client):
    head, rows = table_rows(client.get("/units").text)
    assert head[:3] == ["site", "unit", "mean"] and head[-1] == "labels"
    assert len(rows) == 50
    assert [r[1] for r in rows[:3]] == ["0", "1", "2"] and rows[0][0] == SITE0


def test_units_table_filter_sort_page(client, atlas_path):
    """The HTML table shows exactly the rows of the equivalent DuckDB query."""
    site = "encoder.layer.1.output.dense:input"
    params = {
        "site": site,
        "range": "frac_active:0.05:",
        "sort": "max",
        "order": "desc",
        "per_page": "5",
        "page": "2",
    }
    html = client.get("/units", params=params).text
    _, rows = table_rows(html)
    ref = ref_sql(
        f"select unit from '{atlas_path}/units.parquet' where site = ? and frac_active >= 0.05 "
        "order by max desc, unit limit 5 offset 5",
        [site],
    )
    assert [int(r[1]) for r in rows] == [u for (u,) in ref]
    assert all(r[0] == site for r in rows)
    total = ref_sql(
        f"select count(*) from '{atlas_path}/units.parquet' where site = ? and frac_active >= 0.05",
        [site],
    )[0][0]
    assert f"{total} of {6 * N_UNITS} units" in html
    assert 'aria-sort="descending"' in html
    assert 'rel="prev"' in html and "page 2 of" in html


def test_sort_header_toggles_order(client):
    html = client.get("/units", params={"sort": "max", "order": "desc"}).text
    link = re.search(r'aria-sort="descending">\s*<a href="([^"]+)"', html).group(1)
    assert "order=asc" in link and "sort=max" in link


def test_label_and_search_filters(client, atlas_path):
    _, rows = table_rows(client.get("/units", params={"label": "dead", "per_page": "500"}).text)
    n = ref_sql(f"select count(*) from '{atlas_path}/units.parquet' where label_dead")[0][0]
    assert len(rows) == n > 0 and all("dead" in r[-1] for r in rows)
    _, rows = table_rows(client.get("/units", params={"q": "layer.2", "per_page": "500"}).text)
    assert rows and all("layer.2" in r[0] for r in rows)


def test_filter_chips_remove_one_filter(client):
    html = client.get("/units", params={"site": SITE0, "label": "token"}).text
    chips = re.findall(r'<a class="chip" href="([^"]+)"', html)
    assert len(chips) == 2
    assert "label=" in chips[0] and "site=" not in chips[0]


def test_json_api(client):
    r = client.get("/api/units", params={"sort": "kurtosis", "order": "desc", "per_page": "3"})
    body = r.json()
    assert r.status_code == 200 and body["total"] == 6 * N_UNITS and len(body["rows"]) == 3
    ks = [row["kurtosis"] for row in body["rows"]]
    assert ks == sorted(ks, reverse=True)
    unit = client.get(f"/api/unit/{SITE0}/1", params={"k": 2}).json()
    assert unit["unit"]["unit"] == 1 and len(unit["exemplars"]) == 2
    assert client.get("/api/sites").json()[0]["name"] == SITE0


def test_unit_page(client):
    html = client.get(unit_url(SITE0, 3)).text
    assert "<h1>Unit 3</h1>" in html
    for panel in ("stats", "distribution", "exemplars"):
        assert f'id="panel-{panel}"' in html
    assert html.count('<li class="ex"') == 8
    assert 'id="prev-unit"' in html and 'id="next-unit"' in html
    assert f'href="{unit_url(SITE0, 4)}"' in html and f'href="{unit_url(SITE0, 2)}"' in html
    shades = re.findall(r'<span class="([pn]\d+)', html)
    assert len(set(shades)) > 3  # several shading levels
    assert re.search(
        r'<span class="p12 focus"', html
    )  # the strongest exemplar token is fully shaded
    assert re.search(r'<div class="ctx" data-start="\d+"><span[^>]* title="[-0-9.e+]+">', html)


def test_unit_page_options(client):
    html = client.get(unit_url(SITE0, 3), params={"k": 2, "hist": "linear"}).text
    assert html.count('<li class="ex"') == 2
    assert '<div class="hist" data-mode="linear">' in html
    assert '<g class="hv log">' in html and '<g class="hv linear">' in html


def test_nan_slots_are_unshaded(client):
    html = client.get(unit_url(SITE0, N_UNITS - 1)).text
    assert re.search(r'<span class="na" title="not recorded">', html)


def test_site_names_route_with_dots_colons_and_slashes(atlas_path, tmp_path):
    """A site name with '/' or '%' still routes when percent-encoded as one segment."""
    import json
    import shutil

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    dst = tmp_path / "odd"
    shutil.copytree(atlas_path, dst)
    odd = "enc/oder 50%:input?#"
    for name in ("units", "exemplars"):
        t = pq.read_table(dst / f"{name}.parquet")
        site = pc.replace_substring(t["site"], SITE0, odd)
        pq.write_table(
            t.set_column(t.schema.get_field_index("site"), "site", site), dst / f"{name}.parquet"
        )
    manifest = json.loads((dst / "atlas.json").read_text())
    manifest["sites"][0]["name"] = odd
    (dst / "atlas.json").write_text(json.dumps(manifest))
    from starlette.testclient import TestClient

    with TestClient(create_app(dst), base_url="http://127.0.0.1") as c:
        r = c.get(unit_url(odd, 2))
        assert r.status_code == 200 and "<h1>Unit 2</h1>" in r.text
        assert f'href="{unit_url(odd, 3)}"' in r.text
        assert c.get("/units", params={"site": odd}).status_code == 200


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        (
            "/unit/encoder.layer.0.output.dense%3Ainpt/1",
            404,
            "Closest: encoder.layer.0.output.dense:input",
        ),
        (f"/unit/{quote(SITE0, safe='')}/{N_UNITS}", 404, f"units 0 to {N_UNITS - 1}"),
        (f"/unit/{quote(SITE0, safe='')}/-1", 404, "non-negative integer"),
        (f"/unit/{quote(SITE0, safe='')}/1e3", 404, "non-negative integer"),
        (f"/unit/{quote(SITE0, safe='')}/99999999999", 404, "non-negative integer"),
        (f"/unit/{quote(SITE0, safe='')}/1?k=0", 400, "'k' must be in"),
        (f"/unit/{quote(SITE0, safe='')}/1?hist=cubic", 400, "'hist' must be one of"),
        (f"/unit/{quote(SITE0, safe='')}/1?evil=1", 400, "Unknown parameter 'evil'"),
        ("/units?sort=nope", 400, "Cannot sort by column 'nope'"),
        ("/units?per_page=100000", 400, "per_page"),
        ("/units?page=99", 404, "Page 99 does not exist"),
        ("/units?site=%3Cscript%3E", 400, "Unknown site"),
        ("/?x=1", 400, "Unknown parameter 'x'"),
        ("/no/such/page", 404, "No page at"),
        ("/api/units?range=max", 400, "COLUMN:LOW:HIGH"),
        ("/api/unit/nope/1", 404, "no site 'nope'"),
        (f"/api/unit/{SITE0}/1?k=abc", 422, "k"),
    ],
)
def test_bad_requests_get_a_clear_4xx(client, url, status, message):
    r = client.get(url)
    assert r.status_code == status, r.text
    text = r.json()["detail"] if url.startswith("/api/") else r.text
    assert message in text or message in re.sub(
        r"&#3[49];", lambda m: {"&#34;": '"', "&#39;": "'"}[m.group()], text
    )


@pytest.mark.parametrize(
    "url",
    [
        "/static/../_app.py",
        "/static/%2e%2e/_app.py",
        "/static/..%2f_app.py",
        "/static/%2e%2e%2f%2e%2e%2fatlas.json",
        "/static//etc/passwd",
        "/static/../../../../etc/passwd",
        "/static/templates/base.html",
        "/unit/..%2f..%2fetc%2fpasswd/1",
        "/units.parquet",
        "/atlas.json",
    ],
)
def test_no_path_traversal(client, url):
    r = client.get(url)
    assert r.status_code == 404
    assert "import" not in r.text and "root:" not in r.text and '"format"' not in r.text


def test_static_files_are_served(client):
    r = client.get("/static/app.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert client.get("/static/units.js").status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_read_only(client, method):
    r = client.request(method, "/units")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def test_head_and_security_headers(client):
    r = client.head(unit_url(SITE0, 1))
    assert r.status_code == 200 and r.content == b""
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"


def test_host_header_is_checked(app):
    from starlette.testclient import TestClient

    with TestClient(app, base_url="http://attacker.example") as c:
        r = c.get("/")
    assert r.status_code == 400 and "Unexpected Host header" in r.text
    with TestClient(app, base_url="http://localhost:8000") as c:
        assert c.get("/").status_code == 200


def test_hostile_tokens_are_escaped(client):
    html = client.get(unit_url(SITE0, 1)).text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'onmouseover="alert(1)' not in html
    assert "&#34; onmouseover=&#34;alert(1)" in html
    table = client.get("/units", params={"q": "alert", "per_page": "500"}).text
    assert "<script>alert" not in table and 'onmouseover="alert' not in table
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in table
        or "&#34; onmouseover=&#34;alert(1)" in table
    )


def test_atlas_without_labels(gpt2_atlas):
    from starlette.testclient import TestClient

    with TestClient(create_app(gpt2_atlas), base_url="http://127.0.0.1") as c:
        home = c.get("/").text
        assert "units per label" not in home and '<svg class="chart"' in home
        head, rows = table_rows(c.get("/units").text)
        assert "labels" not in head and rows
        assert c.get("/units", params={"label": "dead"}).status_code == 400
        page = c.get("/unit/encoder.layer.0.output.dense%3Ainput/0").text
        assert "Ġ" not in page.split('id="panel-exemplars"')[1]
