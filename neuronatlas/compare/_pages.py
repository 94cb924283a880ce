"""Viewer page of the comparisons saved in an atlas: one SVG heat-map per comparison.

``/compare`` shows every ``analyses/compare/<name>/matrix.parquet`` of the atlas as a
site × site (or site × region) heat-map; hovering a cell shows the value, its bootstrap
confidence interval and its permutation p-value (SVG ``<title>``, no JavaScript). The page is
listed only for atlases holding at least one comparison.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from neuronatlas.viewer import register_page
from neuronatlas.viewer._atlas import ViewerAtlas
from neuronatlas.viewer._registry import PageContext

__all__ = ["heatmap", "load_comparisons"]

TEMPLATES = Path(__file__).parent / "templates"
_CELL, _LEFT, _TOP = 34, 190, 120
_TICK = 'class="tick" font-size="11" fill="#667085"'
# a sequential ramp: pale -> indigo (similarity) ; distances use it reversed
_STOPS = ((247, 248, 252), (165, 180, 252), (79, 70, 229), (30, 27, 75))


def _color(t: float) -> str:
    if not math.isfinite(t):
        return "#e5e7eb"
    t = min(1.0, max(0.0, t)) * (len(_STOPS) - 1)
    i = min(int(t), len(_STOPS) - 2)
    f = t - i
    r, g, b = (round(a + (c - a) * f) for a, c in zip(_STOPS[i], _STOPS[i + 1], strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _fmt(v: Any, digits: int = 3) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "—"
    return "—" if not math.isfinite(x) else f"{x:.{digits}f}"


def _label(site: str) -> str:
    return site if len(site) <= 28 else "…" + site[-27:]


def _num(x: Any) -> float:
    """A table value as a float; NULL (a CI or p-value that was not computed) as NaN."""
    return float("nan") if x is None else float(x)


def heatmap(rows: list[dict[str, Any]], *, similarity: bool = True, level: float = 0.95) -> Markup:
    """An SVG heat-map of a tidy comparison table (``site_a``, ``site_b``, ``value``, CI, p).

    Examples:
        >>> svg = heatmap([{"site_a": "a", "site_b": "b", "value": 0.5, "ci_low": 0.4,
        ...                 "ci_high": 0.6, "p": 0.01}])
        >>> "<title>a × b: 0.500" in svg
        True
    """
    ys = list(dict.fromkeys(r["site_a"] for r in rows))
    xs = list(dict.fromkeys(r["site_b"] for r in rows))
    vals = [v for v in (_num(r["value"]) for r in rows) if math.isfinite(v)]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if similarity and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    span = (hi - lo) or 1.0
    w, h = _LEFT + _CELL * len(xs) + 80, _TOP + _CELL * len(ys) + 10
    # natural size (no CSS width): small matrices stay small; presentation attributes only,
    # so the static export's Content-Security-Policy (no inline styles) allows it
    out = [f'<svg class="heatmap" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
           f'font-family="system-ui, sans-serif" aria-label="similarity matrix, '
           f'{len(ys)} × {len(xs)}">']  # fmt: skip
    for j, x in enumerate(xs):
        cx = _LEFT + _CELL * j + _CELL / 2
        out.append(f'<text {_TICK} transform="translate({cx:.1f} {_TOP - 6}) rotate(-50)">'
                   f"{escape(_label(x))}</text>")  # fmt: skip
    for i, y in enumerate(ys):
        cy = _TOP + _CELL * i + _CELL / 2 + 4
        out.append(f'<text {_TICK} x="{_LEFT - 6}" y="{cy:.1f}" text-anchor="end">'
                   f"{escape(_label(y))}</text>")  # fmt: skip
    for r in rows:
        i, j = ys.index(r["site_a"]), xs.index(r["site_b"])
        v = _num(r["value"])
        t = (v - lo) / span if math.isfinite(v) else float("nan")
        fill = _color(t if similarity else 1 - t)
        tip = f"{r['site_a']} × {r['site_b']}: {_fmt(v)}"
        if math.isfinite(_num(r.get("ci_low"))):
            tip += f" ({level:.0%} CI {_fmt(r['ci_low'])} – {_fmt(r['ci_high'])})"
        if math.isfinite(_num(r.get("p"))):
            tip += f", p = {float(r['p']):.3g}"
        x0, y0 = _LEFT + _CELL * j, _TOP + _CELL * i
        ink = "#fff" if (t if similarity else 1 - t) > 0.55 else "#111827"
        out.append(
            f'<g class="cell" data-a="{escape(r["site_a"])}" data-b="{escape(r["site_b"])}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x0}" y="{y0}" width="{_CELL - 1}" height="{_CELL - 1}" fill="{fill}"/>'
            f'<text x="{x0 + _CELL / 2 - 0.5:.1f}" y="{y0 + _CELL / 2 + 3.5:.1f}" '
            f'text-anchor="middle" font-size="9.5" fill="{ink}">{escape(_fmt(v, 2))}</text></g>'
        )
    # color bar
    bx = _LEFT + _CELL * len(xs) + 18
    for k in range(20):
        t = 1 - k / 19
        out.append(f'<rect x="{bx}" y="{_TOP + k * 6}" width="12" height="6" '
                   f'fill="{_color(t if similarity else 1 - t)}"/>')  # fmt: skip
    out.append(f'<text {_TICK} x="{bx + 16}" y="{_TOP + 8}">{escape(_fmt(hi, 2))}</text>')
    out.append(f'<text {_TICK} x="{bx + 16}" y="{_TOP + 120}">{escape(_fmt(lo, 2))}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _entries(atlas: ViewerAtlas) -> list[dict[str, Any]]:
    analyses = atlas.manifest.get("analyses") or {}
    return [e for e in analyses.values() if isinstance(e, dict) and e.get("kind") == "compare"]


def load_comparisons(atlas: ViewerAtlas) -> list[dict[str, Any]]:
    """Every saved comparison of the atlas, with its rows (read from its Parquet file)."""
    import pyarrow.parquet as pq

    out = []
    for e in _entries(atlas):
        path = (atlas.path / str(e.get("path", "")) / "matrix.parquet").resolve()
        if atlas.path not in path.parents or not path.is_file():
            continue  # never read outside the atlas
        rows = pq.read_table(path).to_pylist()
        level = float(e.get("level") or 0.95)
        out.append(
            {
                "name": e.get("name"),
                "measure": e.get("measure"),
                "description": e.get("description", ""),
                "other": e.get("other_title") or e.get("other"),
                "options": e.get("options") or {},
                "pool": e.get("pool"),
                "n_perm": e.get("n_perm", 0),
                "n_boot": e.get("n_boot", 0),
                "level": level,
                "interval": e.get("interval", "percentile"),
                "n_stimuli": (e.get("alignment") or {}).get("n_shared"),
                "align": (e.get("alignment") or {}).get("align"),
                "similarity": bool(e.get("similarity", True)),
                "svg": heatmap(rows, similarity=bool(e.get("similarity", True)), level=level),
                "rows": rows,
            }
        )
    return out


@register_page(
    "/compare",
    title="Compare",
    template="compare.html",
    order=60,
    templates=TEMPLATES,
    available=lambda atlas: bool(_entries(atlas)),
)
def compare_page(ctx: PageContext) -> dict[str, Any]:
    ctx.only()
    return {"comparisons": load_comparisons(ctx.atlas)}
