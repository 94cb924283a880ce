"""Viewer page of steering sweeps: shown only for atlases holding ``analyses/steer/*``.

``/steer``: for each sweep, heat-maps of site (layer) × coefficient for the behaviour metric,
the perplexity ratio on neutral text and the KL divergence from the unsteered model, and the
table of every cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from neuronatlas.viewer import register_page
from neuronatlas.viewer._atlas import ViewerAtlas
from neuronatlas.viewer._registry import PageContext
from neuronatlas.viewer._svg import _fmt, _ramp

TEMPLATES = Path(__file__).parent / "templates"
SWEEP_FILE = "sweep.parquet"


def _analyses(atlas: ViewerAtlas) -> list[dict[str, Any]]:
    entries = (atlas.manifest.get("analyses") or {}).values()
    return [
        e
        for e in entries
        if isinstance(e, dict)
        and e.get("kind") == "steer"
        and (atlas.path / str(e.get("path", "")) / SWEEP_FILE).is_file()
    ]


def _has_steer(atlas: ViewerAtlas) -> bool:
    return bool(_analyses(atlas))


def heatmap(
    rows: Sequence[str],
    cols: Sequence[str],
    values: Sequence[Sequence[float]],
    *,
    title: str,
    x_label: str = "coefficient",
    y_label: str = "site",
) -> Markup:
    """An SVG heat-map ``rows × cols`` with the value written in each cell (NaN: grey, "–").

    Examples:
        >>> svg = heatmap(["L0", "L1"], ["-1", "1"], [[0.0, 1.0], [2.0, float("nan")]], title="t")
        >>> svg.count("<rect") - 1, "–" in svg
        (4, True)
    """
    cw, ch, left, top = 64, 26, 150, 28
    width = left + cw * len(cols) + 12
    height = top + ch * len(rows) + 40
    finite = [v for r in values for v in r if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    span = hi - lo or 1.0
    out = [
        f'<svg class="heatmap" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="none"/>',
    ]
    for j, c in enumerate(cols):
        x = left + j * cw + cw / 2
        out.append(
            f'<text x="{x}" y="{top - 8}" text-anchor="middle" font-size="11">{escape(c)}</text>'
        )
    for i, r in enumerate(rows):
        y = top + i * ch
        out.append(
            f'<text x="{left - 6}" y="{y + ch / 2 + 4}" text-anchor="end" font-size="11" '
            f'class="mono">{escape(r)}</text>'
        )
        for j, v in enumerate(values[i]):
            x = left + j * cw
            ok = math.isfinite(v)
            fill = _ramp((v - lo) / span) if ok else "#d4d4d8"
            label = _fmt(v) if ok else "–"
            out.append(
                f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{fill}">'
                f"<title>{escape(r)} · {escape(x_label)} {escape(cols[j])}: {escape(label)}</title></rect>"
                f'<text x="{x + cw / 2 - 1}" y="{y + ch / 2 + 3}" text-anchor="middle" font-size="10" '
                f'fill="#fff">{escape(label)}</text>'
            )
    out.append(
        f'<text x="{left + cw * len(cols) / 2}" y="{height - 8}" text-anchor="middle" '
        f'font-size="11">{escape(x_label)}</text>'
    )
    out.append("</svg>")
    return Markup("".join(out))


def _section(atlas: ViewerAtlas, entry: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    table = pd.read_parquet(atlas.path / str(entry["path"]) / SWEEP_FILE)
    sites = list(dict.fromkeys(table["site"]))
    coefs = sorted(set(table["coef"]))
    cols = [_fmt(float(c)) for c in coefs]
    charts = []
    for col, label in (
        ("behaviour", f"behaviour: {entry.get('behaviour', 'metric')}"),
        ("ppl_ratio", "perplexity on neutral text / unsteered"),
        ("kl", "KL(steered ‖ unsteered) per token, nats"),
    ):
        grid = []
        for s in sites:
            row = []
            for c in coefs:
                cell = table[(table["site"] == s) & (table["coef"] == c)][col]
                row.append(float(cell.iloc[0]) if len(cell) else float("nan"))
            grid.append(row)
        charts.append({"title": label, "svg": heatmap(sites, cols, grid, title=label)})
    base = table.iloc[0]
    return {
        "entry": entry,
        "charts": charts,
        "rows": table.to_dict("records"),
        "behaviour_base": float(base["behaviour_base"]) if "behaviour_base" in table else None,
        "ppl_base": float(base["ppl_base"]) if "ppl_base" in table else None,
    }


@register_page("/steer", title="Steering", template="steer.html", templates=TEMPLATES,
               order=70, available=_has_steer)  # fmt: skip
def steer_page(ctx: PageContext) -> dict[str, Any]:
    ctx.only()
    return {"sections": [_section(ctx.atlas, e) for e in _analyses(ctx.atlas)]}
