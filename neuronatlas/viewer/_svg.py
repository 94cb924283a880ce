"""Small SVG charts drawn on the server: no JavaScript, no library, work in the static export.

Every chart is returned as :class:`markupsafe.Markup`; every piece of text in it (labels,
tooltips) goes through :func:`markupsafe.escape`, so site names and tokens cannot inject markup.
Hover text uses SVG ``<title>`` elements (the browser's native tooltip), except in the
histogram, whose bins the page script reads from data attributes.

Examples:
    >>> svg = histogram([0.0, 1.0, 2.0], [3, 1])
    >>> svg.startswith("<svg") and 'data-counts="3 1"' in svg
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["band_chart", "bar_chart", "histogram", "nice_ticks", "scatter"]

PALETTE = ("#4f46e5", "#0891b2", "#d97706", "#db2777", "#059669", "#7c3aed", "#dc2626", "#475569")
_W, _H = 560, 210
_M = {"l": 52, "r": 14, "t": 14, "b": 40}


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        m, e = f"{v:.1e}".split("e")
        return f"{m.rstrip('0').rstrip('.')}e{int(e)}"
    if a >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _count(v: float) -> str:
    """Compact count label: 950, 1.5k, 20k, 3M."""
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]`` (steps of 1, 2 or 5 x 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    for i in range(64):  # the first tick >= hi closes the axis
        t = first + i * step
        ticks.append(round(t, 12))
        if t >= hi - step * 1e-9:
            break
    return ticks


class _Scale:
    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool = False) -> None:
        self.log = log
        if log:  # whole decades, so the axis starts and ends on a labelled tick
            lo, hi = math.log10(max(lo, 1e-12)), math.log10(max(hi, 1e-12))
            lo, hi = math.floor(lo), max(math.ceil(hi), math.floor(lo) + 1)
        if hi <= lo:
            hi = lo + 1.0
        self.lo, self.hi, self.a, self.b = lo, hi, a, b

    def __call__(self, v: float) -> float:
        if self.log:
            v = math.log10(max(v, 1e-12))
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)

    def ticks(self) -> list[float]:
        if not self.log:
            return [
                t for t in nice_ticks(self.lo, self.hi) if self.lo - 1e-9 <= t <= self.hi + 1e-9
            ]
        lo, hi = math.floor(self.lo), math.ceil(self.hi)
        step = max(1, (hi - lo) // 5)
        return [10.0**e for e in range(lo, hi + 1, step) if self.lo - 1e-9 <= e <= self.hi + 1e-9]


def _frame(
    body: list[str],
    y: _Scale,
    *,
    y_label: str,
    x_label: str = "",
    width: int = _W,
    height: int = _H,
    aria: str,
    top: int = _M["t"],
) -> Markup:
    grid = []
    for t in y.ticks():
        py = y(t)
        grid.append(
            f'<line class="grid" x1="{_M["l"]}" x2="{width - _M["r"]}" y1="{py:.1f}" y2="{py:.1f}"/>'
        )
        grid.append(
            f'<text class="tick" x="{_M["l"] - 6}" y="{py + 3.5:.1f}" text-anchor="end">{escape(_fmt(t))}</text>'
        )
    labels = [
        f'<text class="axis-label" transform="translate(13 {(top + height - _M["b"]) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    ]
    if x_label:
        labels.append(
            f'<text class="axis-label" x="{(_M["l"] + width - _M["r"]) / 2:.0f}" y="{height - 4}" '
            f'text-anchor="middle">{escape(x_label)}</text>'
        )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(aria)}">'
        + "".join(grid + body + labels)
        + "</svg>"
    )


def _x_labels(labels: Sequence[str], xs: Sequence[float], height: int) -> list[str]:
    every = max(1, math.ceil(len(labels) / 16))
    return [
        f'<text class="tick" x="{x:.1f}" y="{height - _M["b"] + 14}" text-anchor="middle">{escape(lab)}</text>'
        for i, (lab, x) in enumerate(zip(labels, xs, strict=True))
        if i % every == 0
    ]


def band_chart(
    x_labels: Sequence[str],
    tips: Sequence[str],
    bands: Sequence[Sequence[float] | None],
    *,
    y_label: str,
    x_label: str = "site",
    log: bool = False,
    color: str = PALETTE[0],
) -> Markup:
    """Per-site distributions: whisker p5-p95, box p25-p75, tick at the median.

    Args:
        x_labels: short label per site; ``tips``: tooltip title per site.
        bands: per site ``(p5, p25, p50, p75, p95)`` or None (nothing to show).
        log: log-scaled y axis (values <= 0 are drawn at the bottom).
    """
    vals = [
        v
        for b in bands
        if b
        for v in b
        if v is not None and math.isfinite(v) and (v > 0 or not log)
    ]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if not log:
        ticks = nice_ticks(lo, hi)
        lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    y = _Scale(lo, hi, _H - _M["b"], _M["t"], log=log)
    n = max(1, len(bands))
    slot = (_W - _M["l"] - _M["r"]) / n
    xs = [_M["l"] + slot * (i + 0.5) for i in range(n)]
    half = max(1.5, min(14.0, slot * 0.32))
    body = []
    for x, b, tip in zip(xs, bands, tips, strict=True):
        if not b or any(v is None or not math.isfinite(v) for v in b):
            continue
        p5, p25, p50, p75, p95 = (y(v) for v in b)
        title = f"{tip}\np5 {_fmt(b[0])} · p25 {_fmt(b[1])} · median {_fmt(b[2])} · p75 {_fmt(b[3])} · p95 {_fmt(b[4])}"
        body.append(
            f'<g class="band"><title>{escape(title)}</title>'
            f'<rect class="hit" x="{x - slot / 2:.1f}" y="{_M["t"]}" width="{slot:.1f}" height="{_H - _M["t"] - _M["b"]}"/>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{p95:.1f}" y2="{p5:.1f}" stroke="{color}" stroke-opacity="0.55"/>'
            f'<rect x="{x - half:.1f}" y="{min(p75, p25):.1f}" width="{2 * half:.1f}" height="{max(1.0, abs(p25 - p75)):.1f}" '
            f'fill="{color}" fill-opacity="0.22" stroke="{color}" stroke-width="1"/>'
            f'<line x1="{x - half:.1f}" x2="{x + half:.1f}" y1="{p50:.1f}" y2="{p50:.1f}" stroke="{color}" stroke-width="2"/></g>'
        )
    return _frame(
        body + _x_labels(x_labels, xs, _H), y, y_label=y_label, x_label=x_label, aria=y_label
    )


def bar_chart(
    x_labels: Sequence[str],
    tips: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    y_label: str,
    x_label: str = "site",
    log: bool = False,
) -> Markup:
    """Grouped bars: one group per site, one bar per series (with a legend)."""
    vals = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    hi = max([v for v in vals if v > 0] or [1.0])
    lo = min([v for v in vals if v > 0] or [1.0]) / 2 if log else 0.0
    if not log:
        hi = nice_ticks(0.0, hi)[-1]
    top = _M["t"] + (18 if len(series) > 1 else 0)  # room for the legend above the plot
    y = _Scale(lo, hi, _H - _M["b"], top, log=log)
    n = max(1, len(x_labels))
    slot = (_W - _M["l"] - _M["r"]) / n
    xs = [_M["l"] + slot * (i + 0.5) for i in range(n)]
    k = max(1, len(series))
    bw = max(1.0, min(16.0, slot * 0.8 / k))
    body = []
    for j, (name, values) in enumerate(series.items()):
        color = PALETTE[j % len(PALETTE)]
        for x, v, tip in zip(xs, values, tips, strict=True):
            if v is None or not math.isfinite(v) or v <= (0 if log else -math.inf):
                continue
            top = y(v)
            bx = x - bw * k / 2 + j * bw
            body.append(
                f'<rect x="{bx:.1f}" y="{top:.1f}" width="{bw * 0.9:.1f}" height="{max(0.0, y(lo if log else 0) - top):.1f}" '
                f'fill="{color}"><title>{escape(f"{tip}{chr(10)}{name}: {_fmt(v)}")}</title></rect>'
            )
    if len(series) > 1:
        lx = _M["l"] + 8
        for j, name in enumerate(series):
            body.append(
                f'<rect x="{lx}" y="4" width="9" height="9" rx="2" fill="{PALETTE[j % len(PALETTE)]}"/>'
                f'<text class="legend" x="{lx + 13}" y="12">{escape(name)}</text>'
            )
            lx += 22 + 6.5 * len(name)
    return _frame(
        body + _x_labels(x_labels, xs, _H),
        y,
        y_label=y_label,
        x_label=x_label,
        aria=y_label,
        top=top,
    )


def scatter(
    points: Sequence[tuple[float, float, int]],
    groups: Sequence[str],
    *,
    x_label: str,
    y_label: str,
    log_y: bool = False,
    width: int = _W,
) -> Markup:
    """Points ``(x, y, group)``; group colors run along a sequential ramp (e.g. layers)."""
    pts = [
        (x, yv, g)
        for x, yv, g in points
        if math.isfinite(x) and math.isfinite(yv) and (yv > 0 or not log_y)
    ]
    xs_ = [p[0] for p in pts] or [0.0, 1.0]
    ys_ = [p[1] for p in pts] or [1.0, 2.0]
    top = _M["t"] + 18
    xt = nice_ticks(min(xs_), max(xs_), n=max(5, width // 110))
    x = _Scale(xt[0], xt[-1], _M["l"], width - _M["r"])
    if log_y:
        y = _Scale(min(ys_), max(ys_), _H - _M["b"], top, log=True)
    else:
        yt = nice_ticks(min(ys_), max(ys_))
        y = _Scale(yt[0], yt[-1], _H - _M["b"], top)
    ng = max(1, len(groups))
    body = []
    for t in xt:
        body.append(
            f'<text class="tick" x="{x(t):.1f}" y="{_H - _M["b"] + 14}" text-anchor="middle">{escape(_fmt(t))}</text>'
        )
    for px, py, g in pts:
        body.append(
            f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="1.8" fill="{_ramp(g / max(1, ng - 1))}" fill-opacity="0.55"/>'
        )
    lx = _M["l"] + 8
    every = max(1, math.ceil(ng / 8))
    for g, name in enumerate(groups):
        if g % every and g != ng - 1:
            continue
        body.append(
            f'<circle cx="{lx + 4}" cy="8" r="4" fill="{_ramp(g / max(1, ng - 1))}"/>'
            f'<text class="legend" x="{lx + 11}" y="12">{escape(name)}</text>'
        )
        lx += 20 + 6.5 * len(name)
    return _frame(
        body,
        y,
        y_label=y_label,
        x_label=x_label,
        width=width,
        aria=f"{y_label} against {x_label}",
        top=top,
    )


def _ramp(t: float) -> str:
    """A perceptually ordered indigo -> teal -> amber ramp, ``t`` in [0, 1]."""
    stops = ((79, 70, 229), (8, 145, 178), (217, 119, 6))
    t = min(1.0, max(0.0, t)) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    f = t - i
    r, g, b = (round(a + (c - a) * f) for a, c in zip(stops[i], stops[i + 1], strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _merge_bins(
    edges: list[float], counts: list[float], max_bins: int
) -> tuple[list[float], list[float]]:
    """Merge adjacent bins so at most ``max_bins`` remain (counts add up; outer edges kept)."""
    n = len(counts)
    if n <= max_bins:
        return edges, counts
    group = math.ceil(n / max_bins)
    new_edges = edges[::group] + ([edges[-1]] if (n % group) else [])
    if new_edges[-1] != edges[-1]:
        new_edges.append(edges[-1])
    new_counts = [sum(counts[i : i + group]) for i in range(0, n, group)]
    return new_edges, new_counts


def _y_axis(ticks: Sequence[tuple[float, float]], width: int, label: str, height: int) -> str:
    """Grid lines and count labels at ``(value, y position)`` pairs, and the axis title."""
    out = []
    for value, py in ticks:
        out.append(
            f'<line class="grid" x1="{_M["l"]}" x2="{width - _M["r"]}" y1="{py:.1f}" y2="{py:.1f}"/>'
        )
        out.append(
            f'<text class="tick" x="{_M["l"] - 6}" y="{py + 3.5:.1f}" text-anchor="end">{escape(_count(value))}</text>'
        )
    out.append(
        f'<text class="axis-label" transform="translate(13 {(_M["t"] + height - _M["b"]) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(label)}</text>'
    )
    return "".join(out)


def histogram(
    edges: Sequence[float],
    counts: Sequence[float],
    *,
    markers: Sequence[tuple[float, str]] = (),
    max_bins: int = 80,
    width: int = _W,
    height: int = 200,
) -> Markup:
    """An activation histogram from ``edges`` (n+1) and ``counts`` (n), with marker lines.

    One SVG holds two views, ``<g class="hv log">`` (y = log10(1 + count), so rare tail bins
    stay visible) and ``<g class="hv linear">``; the page shows one (CSS on the container's
    ``data-mode``). Bars are one path per view, and the bins are in ``data-edges`` /
    ``data-counts`` for the page script's hover readout, so the markup stays small for any
    number of bins (more than ``max_bins`` are merged for display).

    Args:
        markers: ``(value, label)`` vertical lines, e.g. the quantiles.
    """
    n = min(len(counts), max(0, len(edges) - 1))
    if n == 0:
        return Markup('<p class="muted">No histogram in this atlas.</p>')
    e, c = _merge_bins(
        [float(v) for v in edges[: n + 1]], [max(0.0, float(v)) for v in counts[:n]], max_bins
    )
    n = len(c)
    base = height - _M["b"]
    x = _Scale(e[0], e[-1], _M["l"], width - _M["r"])
    top_count = max(c) or 1.0
    decades = max(1, math.ceil(math.log10(top_count)))  # log view: y = log10(1 + count)
    span = base - _M["t"]
    y_log = lambda v: base - math.log10(1.0 + v) / math.log10(1.0 + 10.0**decades) * span  # noqa: E731
    lin_ticks = nice_ticks(0.0, top_count)
    y_lin = lambda v: base - v / lin_ticks[-1] * span  # noqa: E731
    views = []
    for mode, y, ticks, label in (
        ("log", y_log, [0.0] + [10.0**k for k in range(1, decades + 1)], "count (log)"),
        ("linear", y_lin, lin_ticks, "count"),
    ):
        path = []
        for i in range(n):
            if c[i] <= 0:
                continue
            x0, x1 = x(e[i]), x(e[i + 1])
            path.append(f"M{x0:.1f} {base}V{y(c[i]):.1f}h{max(0.6, x1 - x0 - 0.6):.1f}V{base}Z")
        axis = _y_axis([(t, y(t)) for t in ticks], width, label, height)
        views.append(f'<g class="hv {mode}">{axis}<path class="bars" d="{"".join(path)}"/></g>')
    body = []
    for t in nice_ticks(e[0], e[-1]):
        if e[0] <= t <= e[-1]:
            body.append(
                f'<text class="tick" x="{x(t):.1f}" y="{base + 14}" text-anchor="middle">{escape(_fmt(t))}</text>'
            )
    body.append(
        f'<text class="axis-label" x="{(_M["l"] + width - _M["r"]) / 2:.0f}" y="{height - 4}" text-anchor="middle">activation</text>'
    )
    for j, (v, label) in enumerate(markers):
        if not (math.isfinite(v) and e[0] <= v <= e[-1]):
            continue
        px = x(v)
        body.append(
            f'<g class="marker"><title>{escape(f"{label} = {_fmt(v)}")}</title>'
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{_M["t"]}" y2="{base}"/>'
            f'<text x="{px + 3:.1f}" y="{_M["t"] + 9 + 11 * (j % 3)}">{escape(label)}</text></g>'
        )
    data = (
        f'data-x0="{_M["l"]}" data-x1="{width - _M["r"]}" '
        f'data-edges="{" ".join(f"{v:.6g}" for v in e)}" data-counts="{" ".join(str(int(v)) for v in c)}"'
    )
    return Markup(
        f'<svg class="chart hist-svg" viewBox="0 0 {width} {height}" role="img" aria-label="activation histogram" {data}>'
        + "".join(views + body)
        + "</svg>"
    )
