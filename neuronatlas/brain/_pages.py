"""Viewer page and unit panel of encoding models, for brain atlases holding ``analyses/encoding/*``.

``/encoding``: for each encoding analysis, the distribution over brain units of the
cross-validated correlation per model site (one box per site, one chart per brain region), the
distribution of the correlation relative to each unit's noise ceiling, a scatter of score
against ceiling, and the summary table (median r, R², r / ceiling per model site and region).

Unit panel ``encoding``: on a brain unit's page, its score from every model site of every
encoding analysis (hidden for other atlases and units).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neuronatlas.viewer import register_page, register_unit_panel
from neuronatlas.viewer._atlas import ViewerAtlas
from neuronatlas.viewer._registry import PageContext, UnitContext
from neuronatlas.viewer._svg import band_chart, scatter

TEMPLATES = Path(__file__).parent / "templates"


def _analyses(atlas: ViewerAtlas) -> list[dict[str, Any]]:
    entries = (atlas.manifest.get("analyses") or {}).values()
    return [
        e
        for e in entries
        if isinstance(e, dict)
        and e.get("kind") == "encoding"
        and (atlas.path / e.get("path", "") / "scores.parquet").is_file()
    ]


def _has_encoding(atlas: ViewerAtlas) -> bool:
    return bool(_analyses(atlas))


def _band(values: np.ndarray) -> tuple[float, ...] | None:
    v = values[np.isfinite(values)]
    if not len(v):
        return None
    return tuple(float(x) for x in np.percentile(v, [5, 25, 50, 75, 95]))


def _short(site: str) -> str:
    parts = site.replace(":input", "").split(".")
    digits = [p for p in parts if p.isdigit()]
    tail = "mlp" if site.endswith(":input") else ""
    return (f"L{digits[0]}" + (f" {tail}" if tail else "")) if digits else site[-12:]


def _section(atlas: ViewerAtlas, entry: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    path = atlas.path / entry["path"]
    scores = pd.read_parquet(path / "scores.parquet")
    summary = pd.read_parquet(path / "summary.parquet")
    model_sites = list(dict.fromkeys(scores["model_site"]))
    regions = list(dict.fromkeys(scores["site"]))
    charts = []
    for region in regions:
        rows = scores[scores["site"] == region]
        for col, label in (("r", "r (cross-validated)"), ("r_norm", "r / noise ceiling")):
            bands = [
                _band(rows.loc[rows["model_site"] == ms, col].to_numpy(np.float64))
                for ms in model_sites
            ]
            if not any(bands):
                continue
            charts.append({
                "title": f"{region}: {label}",
                "svg": band_chart([_short(m) for m in model_sites], model_sites, bands,
                                  y_label=label, x_label="model site"),
            })  # fmt: skip
    group = {ms: i for i, ms in enumerate(model_sites)}
    ok = np.isfinite(scores["cc_max"].to_numpy(np.float64)) & np.isfinite(
        scores["r"].to_numpy(np.float64)
    )
    pts = [
        (float(c), float(r), group[m])
        for c, r, m in zip(scores["cc_max"][ok], scores["r"][ok], scores["model_site"][ok],
                           strict=True)
    ]  # fmt: skip
    ceiling_svg = (
        scatter(pts, [_short(m) for m in model_sites], x_label="noise ceiling (CC_max)",
                y_label="r (cross-validated)")
        if pts else None
    )  # fmt: skip
    return {
        "entry": entry,
        "charts": charts,
        "ceiling": ceiling_svg,
        "summary": summary.sort_values(["site", "model_site"], kind="stable").to_dict("records"),
        "n_units": int(scores[["site", "unit"]].drop_duplicates().shape[0]),
        "model_sites": model_sites,
    }


@register_page("/encoding", title="Encoding", template="encoding.html", templates=TEMPLATES,
               order=60, available=_has_encoding)  # fmt: skip
def encoding_page(ctx: PageContext) -> dict[str, Any]:
    ctx.only()
    return {"sections": [_section(ctx.atlas, e) for e in _analyses(ctx.atlas)]}


@register_unit_panel("encoding", title="Encoding models", template="panel_encoding.html",
                     templates=TEMPLATES, order=45, wide=True)  # fmt: skip
def encoding_panel(ctx: UnitContext) -> dict[str, Any] | None:
    entries = _analyses(ctx.atlas)
    if not entries:
        return None
    import pandas as pd

    rows = []
    for e in entries:
        scores = pd.read_parquet(
            ctx.atlas.path / e["path"] / "scores.parquet",
            filters=[("site", "==", ctx.site.name), ("unit", "==", int(ctx.unit))],
        )
        for r in scores.itertuples():
            rows.append({"analysis": e["name"], "model_site": r.model_site, "r": r.r,
                         "r2": r.r2, "r_norm": r.r_norm, "cc_max": r.cc_max, "alpha": r.alpha})  # fmt: skip
    if not rows:
        return None
    best = max(rows, key=lambda x: x["r"])
    return {"rows": rows, "best": best}
