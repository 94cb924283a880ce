"""Viewer pages of head scores: shown only for atlases holding ``analyses/heads/*``.

- ``/heads/scores``: one layer x head heat map per score, for every head analysis of the atlas, and
  the top heads of each score;
- ``/heads/attention/{name}/{prompt}/{layer}``: the attention patterns of every head of one
  layer on one prompt (query rows, key columns), tokens on both axes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from neuronatlas.viewer import NotFoundError, register_page
from neuronatlas.viewer._atlas import ViewerAtlas
from neuronatlas.viewer._registry import PageContext
from neuronatlas.viewer._tokens import detect_style, display_token

TEMPLATES = Path(__file__).parent / "templates"
_SIGNED = {"copying", "qk_same_token"}  # scores in [-1, 1]
_SKIP = {"site", "layer", "head", "dormant", "n_nonfinite"}


def _analyses(atlas: ViewerAtlas, file: str = "scores.parquet") -> list[dict[str, Any]]:
    entries = (atlas.manifest.get("analyses") or {}).values()
    return [
        e
        for e in entries
        if isinstance(e, dict)
        and e.get("kind") == "heads"
        and (atlas.path / e.get("path", "") / file).is_file()
    ]


def _has_heads(atlas: ViewerAtlas) -> bool:
    return bool(_analyses(atlas) or _analyses(atlas, "patching.parquet"))


def _entry(atlas: ViewerAtlas, name: str) -> dict[str, Any]:
    for e in _analyses(atlas):
        if e["name"] == name:
            return e
    known = ", ".join(e["name"] for e in _analyses(atlas)) or "none"
    raise NotFoundError(f"No head analysis named {name[:60]!r} in this atlas. Known: {known}.")


def _color(v: float, signed: bool) -> str:
    """White -> indigo for [0, 1]; blue <- white -> orange for [-1, 1]."""
    if v is None or not math.isfinite(v):
        return "#f1f2f4"
    if signed:
        t = max(-1.0, min(1.0, v))
        end = (217, 119, 6) if t > 0 else (37, 99, 235)
        t = abs(t)
    else:
        t, end = max(0.0, min(1.0, v)), (67, 56, 202)
    r, g, b = (round(255 + (c - 255) * t) for c in end)
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(
    values: list[list[float]],
    *,
    row_labels: list[str],
    col_labels: list[str],
    signed: bool = False,
    tips: list[list[str]] | None = None,
    hrefs: list[list[str | None]] | None = None,
    cell: int = 22,
    label_w: int = 44,
    label_h: int = 18,
    rotate_cols: bool = False,
    sqrt: bool = False,
    skip_below: float | None = None,
) -> Markup:
    """An SVG heat map: ``values[row][col]``, optional tooltip and link per cell.

    Colors: white (0) to indigo (1), or blue (-1) / white (0) / orange (+1) when ``signed``;
    ``sqrt`` shades by the square root (small attention weights stay visible).
    ``skip_below``: cells below this value are not drawn (a white background shows through),
    which keeps pages of long prompts small.
    """
    n_rows, n_cols = len(values), len(values[0]) if values else 0
    top = label_h if not rotate_cols else 70
    w, h = label_w + n_cols * cell + 4, top + n_rows * cell + 4
    parts = [
        f'<svg class="chart heatmap" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">'
    ]
    if skip_below is not None:
        parts.append(
            f'<rect x="{label_w}" y="{top}" width="{n_cols * cell - 1}" '
            f'height="{n_rows * cell - 1}" fill="#ffffff"/>'
        )
    for j, lab in enumerate(col_labels):
        x = label_w + j * cell + cell / 2
        if rotate_cols:
            parts.append(
                f'<text class="tick" transform="translate({x + 3:.1f} {top - 4}) rotate(-60)">'
                f"{escape(lab)}</text>"
            )
        else:
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{top - 5}" text-anchor="middle">{escape(lab)}</text>'
            )
    for i, lab in enumerate(row_labels):
        y = top + i * cell + cell / 2 + 4
        parts.append(
            f'<text class="tick" x="{label_w - 5}" y="{y:.1f}" text-anchor="end">{escape(lab)}</text>'
        )
        for j in range(n_cols):
            v = values[i][j]
            if skip_below is not None and math.isfinite(v) and v < skip_below:
                continue
            tip = tips[i][j] if tips else f"{v:.3g}"
            rect = (
                f'<rect x="{label_w + j * cell}" y="{top + i * cell}" width="{cell - 1}" '
                f'height="{cell - 1}" fill="{_color(math.sqrt(max(v, 0.0)) if sqrt else v, signed)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
            href = hrefs[i][j] if hrefs else None
            parts.append(f'<a href="{escape(href)}">{rect}</a>' if href else rect)
    parts.append("</svg>")
    return Markup("".join(parts))


def heads_page(ctx: PageContext) -> dict[str, Any]:
    import duckdb

    ctx.only()
    sections = []
    for e in _analyses(ctx.atlas):
        folder = ctx.atlas.path / e["path"]
        df = duckdb.sql(
            "SELECT * FROM read_parquet(?) ORDER BY layer, head",
            params=[str(folder / "scores.parquet")],
        ).df()
        layers = sorted(df["layer"].unique().tolist())
        n_heads = int(df["head"].max()) + 1
        has_prompts = (folder / "prompts.parquet").is_file()
        maps = []
        for col in [c for c in df.columns if c not in _SKIP]:
            grid = [[float("nan")] * n_heads for _ in layers]
            for r in df.itertuples():
                grid[layers.index(r.layer)][r.head] = float(getattr(r, col))
            tips = [[f"layer {la} head {h}: {col} = {grid[i][h]:.3f}" for h in range(n_heads)]
                    for i, la in enumerate(layers)]  # fmt: skip
            hrefs = None
            if has_prompts:
                hrefs = [[ctx.links.page("/heads/attention/{name}/{prompt}/{layer}", name=e["name"],
                                         prompt=0, layer=la) + f"#head-{h}" for h in range(n_heads)]
                         for la in layers]  # fmt: skip
            top = df.sort_values(col, ascending=False).head(5)
            maps.append({
                "score": col,
                "signed": col in _SIGNED,
                "description": (e.get("scores") or {}).get(col, ""),
                "svg": heatmap(grid, row_labels=[f"L{la}" for la in layers],
                               col_labels=[str(h) for h in range(n_heads)],
                               signed=col in _SIGNED, tips=tips, hrefs=hrefs),
                "top": [(int(r.layer), int(r.head), float(getattr(r, col))) for r in top.itertuples()],
            })  # fmt: skip
        dormant = int(df["dormant"].sum()) if "dormant" in df else None
        sections.append({
            "entry": e, "maps": maps, "n_heads": len(df), "n_dormant": dormant,
            "nonfinite": int(df["n_nonfinite"].sum()) if "n_nonfinite" in df else 0,
            "first_attention": ctx.links.page("/heads/attention/{name}/{prompt}/{layer}",
                                              name=e["name"], prompt=0, layer=layers[0])
            if has_prompts else None,
        })  # fmt: skip
    return {"sections": sections, "patching": [_patching(ctx, e) for e in
                                                _analyses(ctx.atlas, "patching.parquet")]}  # fmt: skip


def _patching(ctx: PageContext, e: dict[str, Any]) -> dict[str, Any]:
    """One head x position heat map of the patching effect per layer."""
    import duckdb

    df = duckdb.sql(
        "SELECT * FROM read_parquet(?) ORDER BY layer, head, pos",
        params=[str(ctx.atlas.path / e["path"] / "patching.parquet")],
    ).df()
    positions = sorted(df["pos"].unique().tolist())
    tokens = e.get("tokens") or []
    labels = [
        f"{p} {tokens[p]}" if p < len(tokens) and tokens[p] is not None else str(p)
        for p in positions
    ]
    maps = []
    for layer, part in df.groupby("layer"):
        n_heads = int(part["head"].max()) + 1
        grid = [[float("nan")] * len(positions) for _ in range(n_heads)]
        for r in part.itertuples():
            grid[r.head][positions.index(r.pos)] = float(r.effect)
        tips = [[f"L{layer}H{h} at {labels[j]}: effect {grid[h][j]:.3f}"
                 for j in range(len(positions))] for h in range(n_heads)]  # fmt: skip
        maps.append({
            "layer": int(layer),
            "svg": heatmap(grid, row_labels=[f"H{h}" for h in range(n_heads)], col_labels=labels,
                           signed=True, tips=tips, cell=16, rotate_cols=True),
        })  # fmt: skip
    best = df.loc[df["effect"].abs().idxmax()] if len(df) else None
    return {
        "entry": e, "maps": maps,
        "best": None if best is None else (int(best["layer"]), int(best["head"]),
                                           int(best["pos"]), float(best["effect"])),
    }  # fmt: skip


def _prompt_table(folder: Path) -> Any:
    import duckdb

    return duckdb.sql(
        "SELECT prompt, pos, token, any_value(title) AS title FROM read_parquet(?) "
        "GROUP BY prompt, pos, token ORDER BY prompt, pos",
        params=[str(folder / "prompts.parquet")],
    ).df()


def attention_page(ctx: PageContext) -> dict[str, Any]:
    import duckdb

    ctx.only()
    e = _entry(ctx.atlas, ctx.params["name"])
    folder = ctx.atlas.path / e["path"]
    if not (folder / "patterns.parquet").is_file():
        raise NotFoundError(f"The head analysis {e['name']!r} kept no attention patterns.")
    try:
        prompt, layer = int(ctx.params["prompt"]), int(ctx.params["layer"])
    except ValueError:
        raise NotFoundError("prompt and layer are non-negative integers.") from None
    prompts = _prompt_table(folder)
    n_prompts = int(prompts["prompt"].max()) + 1
    layers = list(range(int(e.get("n_layers") or 0)))
    if not 0 <= prompt < n_prompts or layer not in layers:
        raise NotFoundError(
            f"No prompt {prompt} / layer {layer}: prompts 0..{n_prompts - 1}, layers "
            f"0..{len(layers) - 1}."
        )
    toks = prompts[prompts["prompt"] == prompt]
    style = detect_style(prompts["token"])
    labels = [display_token(t, style) for t in toks["token"]]
    n = len(labels)
    pat = duckdb.sql(
        "SELECT head, q, k, weight FROM read_parquet(?) WHERE prompt = ? AND layer = ?",
        params=[str(folder / "patterns.parquet"), prompt, layer],
    ).df()
    n_heads = (e.get("heads_per_layer") or [0] * len(layers))[layer] or int(pat["head"].max()) + 1
    scores = duckdb.sql(
        "SELECT * FROM read_parquet(?) WHERE layer = ? ORDER BY head",
        params=[str(folder / "scores.parquet"), layer],
    ).df()
    heads = []
    for h in range(n_heads):
        grid = [[0.0] * n for _ in range(n)]
        for r in pat[pat["head"] == h].itertuples():
            grid[r.q][r.k] = float(r.weight)
        tips = [
            [f"{labels[q]} → {labels[k]}: {grid[q][k]:.3f}" for k in range(n)] for q in range(n)
        ]
        row = scores[scores["head"] == h]
        summary = {
            c: float(row.iloc[0][c])
            for c in ("previous_token", "induction", "duplicate_token", "sink", "copying")
            if c in row and len(row)
        }
        heads.append({
            "head": h, "summary": summary,
            "svg": heatmap(grid, row_labels=labels, col_labels=labels, tips=tips, cell=11,
                           label_w=70, rotate_cols=True, sqrt=True, skip_below=1e-3),
        })  # fmt: skip
    choose = {
        "prompts": [
            (p, str(toks_p), ctx.links.page("/heads/attention/{name}/{prompt}/{layer}",
                                            name=e["name"], prompt=p, layer=layer))
            for p, toks_p in prompts.groupby("prompt")["title"].first().items()
        ],
        "layers": [
            (la, ctx.links.page("/heads/attention/{name}/{prompt}/{layer}", name=e["name"],
                                prompt=prompt, layer=la))
            for la in layers
        ],
    }  # fmt: skip
    return {
        "entry": e, "prompt": prompt, "layer": layer, "heads": heads, "choose": choose,
        "title": str(toks["title"].iloc[0]), "text": " ".join(labels),
        "back": ctx.links.page("/heads/scores"),
    }  # fmt: skip


def _export_attention(atlas: ViewerAtlas, sites: Any) -> list[dict[str, Any]]:
    import duckdb

    out = []
    for e in _analyses(atlas):
        folder = atlas.path / e["path"]
        if not (folder / "prompts.parquet").is_file():
            continue
        ((n,),) = duckdb.sql(
            "SELECT max(prompt) + 1 FROM read_parquet(?)", params=[str(folder / "prompts.parquet")]
        ).fetchall()
        for p in range(int(n)):
            for la in range(int(e.get("n_layers") or 0)):
                out.append({"name": e["name"], "prompt": p, "layer": la})
    return out


register_page(
    "/heads/scores",
    title="Heads",
    template="heads_scores.html",
    templates=TEMPLATES,
    order=40,
    available=_has_heads,
)(heads_page)
register_page(
    "/heads/attention/{name}/{prompt}/{layer}",
    title="Attention",
    template="heads_attention.html",
    templates=TEMPLATES,
    export=_export_attention,
    available=_has_heads,
)(attention_page)
