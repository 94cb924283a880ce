"""The built-in pages and unit panels, registered through the same API extensions use.

- ``/``: the overview (model, corpus, per-site plots, the site list);
- ``/units``: the unit table (search, filters, sort, pagination; server-side through DuckDB,
  client-side from data shards in the static export);
- ``/unit/{site}/{unit}``: a unit, with the panels ``stats``, ``distribution``, ``exemplars``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from neuronatlas.viewer import _svg
from neuronatlas.viewer._atlas import SiteInfo, ViewerAtlas
from neuronatlas.viewer._columns import fmt_value
from neuronatlas.viewer._query import MAX_PER_PAGE, UnitQuery
from neuronatlas.viewer._registry import PageContext, UnitContext, ViewerRegistry
from neuronatlas.viewer._render import site_slug

__all__ = ["register_builtins"]

_GROUPS = (
    ("Moments", ("count", "mean", "std", "var", "skew", "kurtosis")),
    ("Range", ("min", "p50", "p90", "p99", "p999", "max")),
    ("Activity", ("frac_active", "frac_above")),
    ("Non-finite", ("n_nan", "n_posinf", "n_neginf")),
)
_SHOWN_ELSEWHERE = {"site", "layer", "unit", "top_token"}


# -- overview ---------------------------------------------------------------------------------


def _x_axis(sites: Sequence[SiteInfo]) -> tuple[list[str], str]:
    layers = [s.layer for s in sites]
    if all(v is not None for v in layers) and len(set(layers)) == len(layers):
        return [str(v) for v in layers], "layer"
    pairs = [(s.layer, s.kind) for s in sites]
    if all(v is not None for v in layers) and len(set(pairs)) == len(pairs):
        return [f"{s.layer}{(s.kind or '?')[0]}" for s in sites], "layer (kind)"
    return [str(s.index) for s in sites], "site #"


def overview_page(ctx: PageContext) -> dict[str, Any]:
    from neuronatlas.viewer._overview import site_summaries, stat_sample

    ctx.only()
    atlas = ctx.atlas
    summary = site_summaries(atlas)
    sites = [e["site"] for e in summary["sites"]]
    xl, xtitle = _x_axis(sites)
    tips = [f"{s.name} ({e['n']:,} units)" for s, e in zip(sites, summary["sites"], strict=True)]
    charts = []
    for key, ylabel, log in summary["metrics"]:
        bands = [e[key] for e in summary["sites"]]
        charts.append(
            {
                "key": key,
                "title": ylabel,
                "svg": _svg.band_chart(xl, tips, bands, y_label=ylabel, x_label=xtitle, log=log),
            }
        )
    if summary["labels"]:
        series = {
            c[6:] if c.startswith("label_") else c: [e["label_counts"][c] for e in summary["sites"]]
            for c in summary["labels"]
        }
        charts.append(
            {
                "key": "labels",
                "title": "units per label",
                "svg": _svg.bar_chart(xl, tips, series, y_label="units", x_label=xtitle),
            }
        )
    points = stat_sample(atlas, "mean", "std")
    if points:
        wide = len(charts) % 2 == 0  # an odd chart out fills its row
        groups = [f"{xtitle.split()[0]} {x}" for x in xl]
        charts.append({
            "key": "mean_std",
            "title": "mean and std of each unit (a sample of up to 2,500 units)",
            "svg": _svg.scatter(points, groups, x_label="mean", y_label="std", log_y=True, width=1150 if wide else 560),
            "wide": wide,
        })  # fmt: skip
    nonfinite = {
        k: v
        for k, v in (atlas.manifest.get("nonfinite") or {}).items()
        if isinstance(v, dict) and any(v.values())
    }
    label_totals = {
        c.title: sum(e["label_counts"][c.name] for e in summary["sites"])
        for c in atlas.label_columns
    }
    return {
        "info": atlas.describe(),
        "summary": summary,
        "charts": charts,
        "nonfinite": nonfinite,
        "label_totals": label_totals,
        "x_labels": xl,
    }


# -- unit table -------------------------------------------------------------------------------


def _table_meta(atlas: ViewerAtlas, sites: Sequence[SiteInfo], links: Any) -> dict[str, Any]:
    return {
        "columns": [
            {
                "name": c.name,
                "kind": c.kind,
                "title": c.title,
                "description": c.description,
                "label": c.label,
            }
            for c in atlas.columns.values()
            if c.sortable
        ],
        "defaults": list(atlas.default_columns)
        + (["top_token"] if "top_token" in atlas.columns else []),
        "sites": [
            {
                "name": s.name,
                "index": s.index,
                "layer": s.layer,
                "n_units": s.n_units,
                "dir": site_slug(s.index, s.name),
            }
            for s in sites
        ],
        "n_units": sum(
            int(n)
            for s in sites
            for (n,) in atlas.sql("SELECT count(*) FROM units WHERE site = ?", [s.name])
        ),
        "per_page": 50,
        "max_per_page": MAX_PER_PAGE,
        "unit_base": links._rel("unit") if links.static else "",
        "data_base": links._rel("data") if links.static else "",
    }


def units_page(ctx: PageContext) -> dict[str, Any]:
    atlas = ctx.atlas
    base = {
        "columns": atlas.columns,
        "numeric": [c for c in atlas.columns.values() if c.numeric],
        "sortable": [c for c in atlas.columns.values() if c.sortable],
        "labels": atlas.label_columns,
        "sites": atlas.sites,
    }
    if ctx.static:
        sites = [
            s for s in atlas.sites if ctx.links.exported is None or s.name in ctx.links.exported
        ]
        return {
            **base,
            "result": None,
            "query": UnitQuery(),
            "meta": _table_meta(atlas, sites, ctx.links),
        }
    query = UnitQuery.from_params(
        ctx.query, columns=atlas.columns, sites=[s.name for s in atlas.sites]
    )
    result = atlas.query_units(query)
    return {
        **base,
        "result": result,
        "query": query,
        "meta": None,
        **_table_links(ctx, query, result),
    }


def _table_links(ctx: PageContext, query: UnitQuery, result: Any) -> dict[str, Any]:
    """URLs of the table's controls: sort headers, pages, and one chip per active filter."""
    links, cols = ctx.links, ctx.atlas.columns
    url = lambda q: links.units(q.to_params())  # noqa: E731
    sort_urls = {}
    for c in cols.values():
        if c.sortable:
            order = "desc" if c.numeric else "asc"
            if query.sort == c.name:
                order = "asc" if query.order == "desc" else "desc"
            sort_urls[c.name] = url(query.replace(sort=c.name, order=order, page=1))
    n = result.n_pages
    pages = {
        "first": url(query.replace(page=1)) if query.page > 1 else None,
        "prev": url(query.replace(page=query.page - 1)) if query.page > 1 else None,
        "next": url(query.replace(page=query.page + 1)) if query.page < n else None,
        "last": url(query.replace(page=n)) if query.page < n else None,
    }
    chips = []
    if query.q:
        chips.append((f"search: {query.q}", url(query.replace(q="", page=1))))
    for s in query.sites:
        chips.append(
            (
                f"site: {s}",
                url(query.replace(sites=tuple(x for x in query.sites if x != s), page=1)),
            )
        )
    for v in query.layers:
        chips.append(
            (
                f"layer: {v}",
                url(query.replace(layers=tuple(x for x in query.layers if x != v), page=1)),
            )
        )
    for v in query.labels:
        chips.append(
            (
                f"label: {cols[v].title}",
                url(query.replace(labels=tuple(x for x in query.labels if x != v), page=1)),
            )
        )
    for v in query.not_labels:
        rest = tuple(x for x in query.not_labels if x != v)
        chips.append((f"not: {cols[v].title}", url(query.replace(not_labels=rest, page=1))))
    if query.top_token is not None:
        chips.append(
            (
                f"top token: {ctx.atlas.display(query.top_token)}",
                url(query.replace(top_token=None, page=1)),
            )
        )
    for r in query.ranges:
        lo = "" if r.lo is None else f"{fmt_value(r.lo, 'float')} ≤ "
        hi = "" if r.hi is None else f" ≤ {fmt_value(r.hi, 'float')}"
        rest = tuple(x for x in query.ranges if x != r)
        chips.append((f"{lo}{cols[r.column].title}{hi}", url(query.replace(ranges=rest, page=1))))
    return {"sort_urls": sort_urls, "pages": pages, "chips": chips, "reset_url": links.units()}


def _format_shard(values: Iterable[Any], kind: str) -> str:
    if kind == "float":
        return (
            "["
            + ",".join(
                "null" if v is None or not math.isfinite(v) else repr(float(f"{v:.7g}"))
                for v in values
            )
            + "]"
        )
    if kind == "int":
        return "[" + ",".join("null" if v is None else str(int(v)) for v in values) + "]"
    if kind == "bool":
        return "[" + ",".join("null" if v is None else ("1" if v else "0") for v in values) + "]"
    return json.dumps(list(values), ensure_ascii=True)


def write_unit_shards(atlas: ViewerAtlas, out: Path, sites: Sequence[SiteInfo]) -> None:
    """Write ``data/units-<site index>.js``: one site's unit table, column-wise, for ``units.html``."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    cols = [c for c in atlas.columns.values() if c.sortable]
    names = ", ".join('"' + c.name.replace('"', '""') + '"' for c in cols)
    for site in sites:
        rows = atlas.sql(f"SELECT {names} FROM units WHERE site = ? ORDER BY unit", [site.name])
        parts = [
            json.dumps(c.name) + ":" + _format_shard((r[j] for r in rows), c.kind)
            for j, c in enumerate(cols)
        ]
        if "top_token" in atlas.columns:
            at = [c.name for c in cols].index("top_token")
            shown = (None if r[at] is None else atlas.display(r[at]) for r in rows)
            parts.append('"__top_token_display":' + _format_shard(shown, "str"))
        body = ",".join(parts)
        (data / f"units-{site.index}.js").write_text(
            "(window.NeuronAtlasShards = window.NeuronAtlasShards || {})"
            f'[{site.index}] = {{"n": {len(rows)}, "values": {{{body}}}}};\n',
            encoding="ascii",
        )


# -- unit page --------------------------------------------------------------------------------


def unit_page(ctx: PageContext) -> dict[str, Any]:
    atlas = ctx.atlas
    site, unit = atlas.site(ctx.params["site"]), int(ctx.params["unit"])
    top_k = int((atlas.manifest.get("settings") or {}).get("top_k") or 100)
    ctx.only("k", "hist")
    options = {
        "k": ctx.arg_int("k", default=top_k, lo=1, hi=max(1000, top_k)),
        "hist": ctx.arg_choice("hist", ("log", "linear"), "log"),
    }
    row = atlas.unit_row(site.name, unit)
    uctx = UnitContext(
        atlas=atlas,
        site=site,
        unit=unit,
        row=row,
        links=ctx.links,
        static=ctx.static,
        options=options,
    )
    panels = []
    for panel in ctx.registry.ordered_panels():
        data = panel.handler(uctx)
        if data is not None:
            panels.append({"panel": panel, "p": data})
    prev, nxt = atlas.neighbors(site.name, unit)
    return {
        "site": site,
        "unit": unit,
        "row": row,
        "panels": panels,
        "prev": prev,
        "next": nxt,
        "prev_url": ctx.links.unit(*prev) if prev else None,
        "next_url": ctx.links.unit(*nxt) if nxt else None,
        "ctx": uctx,
        "top_token": atlas.display(row.get("top_token")),
    }


def export_units(atlas: ViewerAtlas, sites: Sequence[SiteInfo]) -> Iterable[dict[str, Any]]:
    for s in sites:
        for u in range(s.n_units):
            yield {"site": s.name, "unit": u}


def stats_panel(ctx: UnitContext) -> dict[str, Any]:
    cols = ctx.atlas.columns
    groups = []
    for title, names in _GROUPS:
        items = [(cols[n], ctx.row.get(n)) for n in names if n in cols]
        if items:
            groups.append((title, items))
    known = {n for _, names in _GROUPS for n in names} | _SHOWN_ELSEWHERE
    labels = [(c, bool(ctx.row.get(c.name))) for c in ctx.atlas.label_columns]
    label_names = {c.name for c, _ in labels}
    other = [
        (c, ctx.row.get(c.name))
        for c in cols.values()
        if c.name not in known and c.name not in label_names
    ]
    if other:
        groups.append(("Other columns", other))
    return {"groups": groups, "labels": labels}


def distribution_panel(ctx: UnitContext) -> dict[str, Any] | None:
    row = ctx.row
    edges, counts = row.get("hist_edges"), row.get("hist_counts")
    markers = [(row[k], lab) for k, lab in (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"))
               if row.get(k) is not None]  # fmt: skip
    quantiles = [(lab, row.get(k)) for k, lab in (("min", "min"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"),
                                                   ("p999", "p99.9"), ("max", "max")) if k in row]  # fmt: skip
    if not edges or not counts:
        if not quantiles:
            return None
        return {"svg": None, "quantiles": quantiles, "mode": ctx.options.get("hist", "log")}
    return {
        "svg": _svg.histogram(edges, counts, markers=markers),
        "quantiles": quantiles,
        "mode": ctx.options.get("hist", "log"),
        "total": int(sum(counts)),
    }


def exemplars_panel(ctx: UnitContext) -> dict[str, Any]:
    exemplars = ctx.atlas.exemplars(ctx.site.name, ctx.unit, limit=ctx.options.get("k"))
    finite = [abs(t.act) for e in exemplars for t in e.context if t.act is not None]
    finite += [abs(e.activation) for e in exemplars if math.isfinite(e.activation)]
    scale = max(finite) if finite else 1.0
    return {
        "exemplars": exemplars,
        "scale": scale,
        "scale_text": fmt_value(scale, "float"),
        "has_tokens": "tokens" in ctx.atlas.files,
        "has_exemplars": "exemplars" in ctx.atlas.files,
    }


def labels_panel(ctx: UnitContext) -> dict[str, Any] | None:
    """Each taxonomy label of the unit with its evidence: score, rule and threshold, source.

    The rules come from ``atlas.json`` (``taxonomy.labels``, written by the build); hidden for
    atlases built without the taxonomy.
    """
    specs = (ctx.atlas.manifest.get("taxonomy") or {}).get("labels") or {}
    if not specs:
        return None
    labels = []
    for name, spec in specs.items():
        score_col = spec.get("score", "")
        value = ctx.row.get(score_col)
        labels.append(
            {
                "name": name.removeprefix("label_"),
                "on": bool(ctx.row.get(name)),
                "score_column": score_col,
                "score": fmt_value(value, "float") if isinstance(value, (int, float)) else "—",
                "rule": spec.get("rule", ""),
                "source": spec.get("source", ""),
            }
        )
    detail = []
    for key in ("tok", "bigram", "pos_peak", "massive_pos_mode"):
        value = ctx.row.get(key)
        if value is None or value == "" or value == -1:
            continue
        detail.append((key, ctx.atlas.display(value) if isinstance(value, str) else str(value)))
    return {"labels": labels, "detail": detail}


def register_builtins(reg: ViewerRegistry) -> None:
    """Register the built-in pages and panels on ``reg``."""
    reg.column("abs_max", sql='greatest(abs("min"), abs("max"))', requires=("min", "max"), title="max |a|",
               description="largest absolute activation: max(|min|, |max|)")  # fmt: skip
    reg.page("/", title="Overview", template="overview.html", order=10)(overview_page)
    reg.page("/units", title="Units", template="units.html", order=20, assets=write_unit_shards)(
        units_page
    )
    reg.page("/unit/{site}/{unit}", title="Unit", template="unit.html", export=export_units)(
        unit_page
    )
    reg.unit_panel("stats", title="Statistics", template="panel_stats.html", order=10)(stats_panel)
    reg.unit_panel(
        "distribution", title="Distribution", template="panel_distribution.html", order=20
    )(distribution_panel)
    reg.unit_panel(
        "exemplars", title="Top exemplars", template="panel_exemplars.html", order=30, wide=True
    )(exemplars_panel)
    reg.unit_panel(
        "labels", title="Label evidence", template="panel_labels.html", order=40, wide=True
    )(labels_panel)
