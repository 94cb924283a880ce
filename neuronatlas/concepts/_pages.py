"""Viewer page of probes and concepts: shown only for atlases holding such analyses.

``/probes`` draws, for every analysis of kind ``probes`` (methods ``linear``, ``k-sparse``,
``net2vec``) and ``concepts`` (NMF) recorded in the atlas: probe, control and shuffled scores
per site; test F1 vs k per site with the best single neurons (linked to their unit pages);
Net2Vec's set IoU of the combination vs the best unit; the top tokens of each NMF concept.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from neuronatlas.viewer import register_page
from neuronatlas.viewer._atlas import ViewerAtlas
from neuronatlas.viewer._registry import PageContext
from neuronatlas.viewer._svg import bar_chart, scatter
from neuronatlas.viewer._tokens import detect_style, display_token

TEMPLATES = Path(__file__).parent / "templates"
_FILES = {
    ("probes", "linear"): "results.parquet",
    ("probes", "k-sparse"): "curve.parquet",
    ("probes", "net2vec"): "results.parquet",
    ("concepts", "nmf"): "top_tokens.parquet",
}


def _analyses(atlas: ViewerAtlas) -> list[dict[str, Any]]:
    entries = (atlas.manifest.get("analyses") or {}).values()
    out = []
    for e in entries:
        if not isinstance(e, dict):
            continue
        file = _FILES.get((e.get("kind"), e.get("method")))
        if file and (atlas.path / str(e.get("path", "")) / file).is_file():
            out.append(e)
    return out


def _available(atlas: ViewerAtlas) -> bool:
    return bool(_analyses(atlas))


def _read(folder: Path, file: str) -> Any:
    import duckdb

    return duckdb.sql("select * from read_parquet(?)", params=[str(folder / file)]).df()


def _short(site: str) -> str:
    return site.replace("encoder.layer.", "L").replace(".output.dense:input", " mlp")


def _f(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return x


def _linear(e: dict[str, Any], folder: Path) -> dict[str, Any]:
    df = _read(folder, "results.parquet")
    sites = df["site"].tolist()
    chart = bar_chart(
        [_short(s) for s in sites],
        sites,
        {
            "probe": [_f(v) for v in df["score"]],
            "control task": [_f(v) for v in df["control_score"]],
            "shuffled labels": [_f(v) for v in df["shuffled_score"]],
        },
        y_label=str(df["metric"].iloc[0]) if len(df) else "score",
    )
    rows = [
        {"site": r.site, "score": _f(r.score), "control": _f(r.control_score),
         "selectivity": _f(r.selectivity), "shuffled": _f(r.shuffled_score), "best": _f(r.best)}
        for r in df.itertuples()
    ]  # fmt: skip
    return {"kind": "linear", "chart": chart, "rows": rows}


def _sparse(e: dict[str, Any], folder: Path, ctx: PageContext) -> dict[str, Any]:
    curve = _read(folder, "curve.parquet")
    sites = list(dict.fromkeys(curve["site"]))
    points = [(math.log2(float(r.k)), _f(r.f1), sites.index(r.site)) for r in curve.itertuples()]
    chart = scatter(points, [_short(s) for s in sites], x_label="log2 k", y_label="test F1")
    neurons = []
    if (folder / "neurons.parquet").is_file():
        nd = _read(folder, "neurons.parquet").sort_values("accuracy", ascending=False).head(10)
        for r in nd.itertuples():
            neurons.append({"site": r.site, "unit": int(r.unit), "f1": _f(r.f1),
                            "candidate": bool(r.candidate),
                            "href": ctx.links.unit(r.site, int(r.unit))})  # fmt: skip
    wide = curve.pivot(index="site", columns="k", values="f1").reindex(sites)
    table = {"ks": [int(k) for k in wide.columns],
             "rows": [(s, [_f(v) for v in wide.loc[s]]) for s in sites]}  # fmt: skip
    return {"kind": "sparse", "chart": chart, "neurons": neurons, "table": table}


def _net2vec(e: dict[str, Any], folder: Path) -> dict[str, Any]:
    df = _read(folder, "results.parquet")
    sites = df["site"].tolist()
    chart = bar_chart(
        [_short(s) for s in sites],
        sites,
        {
            "combination": [_f(v) for v in df["iou_combination"]],
            "best single unit": [_f(v) for v in df["iou_best_unit"]],
        },
        y_label="set IoU",
    )
    return {"kind": "net2vec", "chart": chart}


def _concepts(e: dict[str, Any], folder: Path, ctx: PageContext) -> dict[str, Any]:
    top = _read(folder, "top_tokens.parquet")
    found = ctx.atlas.sql(
        "select t.doc, t.pos, t.token from tokens t join (select distinct doc, pos from "
        "read_parquet(?)) s on t.doc = s.doc and t.pos = s.pos",
        [str(folder / "top_tokens.parquet")],
    )
    by = {(int(d), int(p)): str(tok) for d, p, tok in found}
    style = detect_style(by.values())
    concepts = []
    for c, g in top.sort_values(["concept", "rank"]).groupby("concept"):
        toks = [
            display_token(by.get((int(d), int(p)), "?"), style)
            for d, p in zip(g["doc"], g["pos"], strict=True)
        ]
        concepts.append({"concept": int(c), "tokens": toks[:12], "max": _f(g["score"].max())})
    return {"kind": "concepts", "concepts": concepts, "summary": e.get("summary") or {}}


def probes_page(ctx: PageContext) -> dict[str, Any]:
    ctx.only()
    sections = []
    for e in _analyses(ctx.atlas):
        folder = ctx.atlas.path / e["path"]
        method = e.get("method")
        if method == "linear":
            body = _linear(e, folder)
        elif method == "k-sparse":
            body = _sparse(e, folder, ctx)
        elif method == "net2vec":
            body = _net2vec(e, folder)
        else:
            body = _concepts(e, folder, ctx)
        sections.append({"entry": e, **body})
    return {"sections": sections}


register_page(
    "/probes",
    title="Probes",
    template="probes.html",
    templates=TEMPLATES,
    order=45,
    available=_available,
)(probes_page)
