"""Per-site summaries of the unit table, for the overview page.

One grouped DuckDB query computes, for each site, the distribution of the key statistics over
its units (p5, p25, median, p75, p95 of finite values) and the count of units per label.

Examples:
    >>> import tempfile
    >>> from neuronatlas.viewer._atlas import ViewerAtlas
    >>> from neuronatlas.viewer._synthetic import write_synthetic_atlas
    >>> atlas = ViewerAtlas(write_synthetic_atlas(tempfile.mkdtemp() + "/a", n_units=8))
    >>> summary = site_summaries(atlas)
    >>> [s["n"] for s in summary["sites"]]
    [8, 8, 8, 8]
"""

from __future__ import annotations

from typing import Any

from neuronatlas.viewer._atlas import ViewerAtlas
from neuronatlas.viewer._query import quote_ident

__all__ = ["METRICS", "site_summaries", "stat_sample"]

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

#: (key, SQL expression, required columns, y label, log axis)
METRICS: tuple[tuple[str, str, tuple[str, ...], str, bool], ...] = (
    ("frac_active", '"frac_active"', ("frac_active",), "active fraction", False),
    ("mean", '"mean"', ("mean",), "mean activation", False),
    ("std", '"std"', ("std",), "std of activation", True),
    ("abs_max", 'greatest(abs("min"), abs("max"))', ("min", "max"), "max |activation|", True),
    ("kurtosis", '"kurtosis"', ("kurtosis",), "excess kurtosis", False),
)


def site_summaries(atlas: ViewerAtlas) -> dict[str, Any]:
    """Per-site distributions of the :data:`METRICS` the atlas has, and label counts.

    Returns:
        ``{"metrics": [(key, y label, log)], "labels": [column], "sites": [{"site": SiteInfo,
        "n": units, key: (p5, p25, p50, p75, p95) or None, "max_" + key: float,
        "label_counts": {column: int}}]}``
    """
    present = set(atlas.columns)
    metrics = [m for m in METRICS if set(m[2]) <= present]
    labels = [c.name for c in atlas.label_columns]
    qs = "[" + ", ".join(map(str, QUANTILES)) + "]"
    sel = ["__site_idx", "count(*)"]
    for _key, expr, *_ in metrics:
        sel.append(f"quantile_cont({expr}, {qs}) FILTER (WHERE isfinite({expr}))")
        sel.append(f"max({expr}) FILTER (WHERE isfinite({expr}))")
    sel += [f"count(*) FILTER (WHERE {quote_ident(c)})" for c in labels]
    rows = {r[0]: r for r in atlas.sql(f"SELECT {', '.join(sel)} FROM units GROUP BY __site_idx")}
    sites = []
    for info in atlas.sites:
        r = rows.get(info.index)
        entry: dict[str, Any] = {"site": info, "n": int(r[1]) if r else 0, "label_counts": {}}
        for j, (key, *_rest) in enumerate(metrics):
            q = r[2 + 2 * j] if r else None
            entry[key] = tuple(float(v) for v in q) if q else None
            entry["max_" + key] = r[3 + 2 * j] if r else None
        for j, c in enumerate(labels):
            entry["label_counts"][c] = int(r[2 + 2 * len(metrics) + j]) if r else 0
        sites.append(entry)
    return {"metrics": [(m[0], m[3], m[4]) for m in metrics], "labels": labels, "sites": sites}


def stat_sample(
    atlas: ViewerAtlas, x: str, y: str, n: int = 2500
) -> list[tuple[float, float, int]]:
    """Up to ``n`` units' ``(x, y, site index)``, a repeatable random sample (for scatter plots)."""
    if not {x, y} <= set(atlas.columns):
        return []
    rows = atlas.sql(
        f"SELECT {quote_ident(x)}, {quote_ident(y)}, __site_idx FROM units "
        f"WHERE isfinite({quote_ident(x)}) AND isfinite({quote_ident(y)}) "
        f"USING SAMPLE reservoir({int(n)} ROWS) REPEATABLE (7)"
    )
    return [(float(a), float(b), int(s)) for a, b, s in rows]
