"""``neuronatlas info`` and ``neuronatlas query``: read an atlas from the shell."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from neuronatlas.cli._app import command, console
from neuronatlas.errors import NeuronAtlasError


@command("info")
def info(
    atlas_path: Path = typer.Argument(..., metavar="ATLAS", help="Atlas directory."),
    top: int = typer.Option(10, "--top", help="How many high-kurtosis units to show."),
) -> None:
    """Summarize an atlas: model, corpus, a per-layer table and its most kurtotic units."""
    import pandas as pd

    from neuronatlas.atlas import open_atlas

    atlas = open_atlas(atlas_path)
    m = atlas.manifest
    model, corpus = m["model"], m["corpus"]
    console.print(
        f"[bold]{escape(str(atlas.path))}[/]  (atlas format v{m['version']}, neuronatlas {m.get('neuronatlas_version')})"
    )
    console.print(
        f"model   {escape(str(model.get('name')))} ({model.get('class')}, {model.get('n_params', 0):,} parameters)"
    )
    console.print(
        f"corpus  {escape(str(corpus.get('description')))}: {corpus.get('n_tokens', 0):,} tokens in {corpus.get('n_docs', 0):,} sequences"
    )
    t = m.get("timings", {})
    if t:
        console.print(
            f"built   in {t.get('total_s', 0):.1f} s ({t.get('tokens_per_s', 0):,.0f} tokens/s)"
        )

    per_layer = _per_layer(atlas)
    table = Table(title="units per site", title_justify="left")
    for col in ("site", "layer", "units", "mean active", "dead", "max |act|", "non-finite"):
        table.add_column(col, justify="left" if col == "site" else "right")
    for r in per_layer.itertuples():
        table.add_row(
            escape(r.site),
            "" if pd.isna(r.layer) else str(int(r.layer)),
            f"{r.units:,}",
            f"{r.act:.3f}",
            f"{int(r.dead):,}",
            f"{r.maxabs:.3g}",
            f"{int(r.nonfinite):,}",
        )
    console.print(table)

    labels = [c for c in atlas.units.columns if c.startswith("label_")]
    if labels:
        counts = atlas.units.groupby("site", sort=False)[labels].sum()
        lt = Table(title="label counts per site", title_justify="left")
        lt.add_column("site")
        for c in labels:
            lt.add_column(c.removeprefix("label_"), justify="right")
        for site, row in counts.iterrows():
            lt.add_row(escape(site), *(f"{int(v):,}" for v in row))
        console.print(lt)

    hi = atlas.units.dropna(subset=["kurtosis"]).nlargest(top, "kurtosis")
    kt = Table(title=f"the {top} units with the highest kurtosis", title_justify="left")
    for col in ("site", "unit", "kurtosis", "max", "top exemplar in context"):
        kt.add_column(col, justify="right" if col in ("unit", "kurtosis", "max") else "left")
    for r in hi.itertuples():
        ex = atlas.exemplars(r.site, int(r.unit))
        ctx = _snippet(ex["context"].iloc[0]) if len(ex) else ""
        kt.add_row(escape(r.site), str(r.unit), f"{r.kurtosis:.1f}", f"{r.max:.3g}", ctx)
    console.print(kt)

    analyses = list((m.get("analyses") or {}).values())
    if analyses:
        at = Table(title="analyses", title_justify="left")
        for col in ("analysis", "created", "path"):
            at.add_column(col)
        for a in analyses:
            at.add_row(escape(a["key"]), str(a.get("created", "")), escape(a["path"]))
        console.print(at)


def _snippet(context: str, before: int = 40, after: int = 25) -> str:
    """One line around the exemplar token (marked ⟦…⟧ by Atlas.exemplars), highlighted."""
    i, j = context.find("⟦"), context.find("⟧")
    if i < 0 or j < 0:
        return escape(context[: before + after])
    head = context[max(0, i - before) : i]
    tail = context[j + 1 : j + 1 + after]
    line = lambda t: escape(t.replace("\n", "⏎"))  # noqa: E731
    return f"{'…' if i > before else ''}{line(head)}[bold reverse]⟦{line(context[i + 1 : j])}⟧[/]{line(tail)}…"


def _per_layer(atlas):
    # the taxonomy's dead label when the atlas has it, else never active above 0
    cond = "label_dead" if "label_dead" in atlas.units.columns else "frac_active = 0"
    return (
        atlas.query(
            "select site, any_value(layer) as layer, count(*) as units, avg(frac_active) as act, "
            f"sum(case when {cond} then 1 else 0 end) as dead, "
            "max(greatest(abs(min), abs(max))) as maxabs, "
            "sum(n_nan + n_posinf + n_neginf) as nonfinite from units group by site"
        )
        .set_index("site")
        .loc[atlas.sites]
        .reset_index()
    )


@command("query")
def query(
    atlas_path: Path = typer.Argument(..., metavar="ATLAS", help="Atlas directory."),
    sql: str = typer.Argument(
        ..., help="DuckDB SQL over the views units, exemplars, tokens, docs."
    ),
    csv: bool = typer.Option(False, "--csv", help="Write CSV to standard output."),
    as_json: bool = typer.Option(False, "--json", help="Write JSON records to standard output."),
    limit: int = typer.Option(
        50, "--limit", help="Rows shown in the table view (not for --csv/--json)."
    ),
) -> None:
    """Run SQL (DuckDB) over an atlas's tables."""
    import duckdb

    from neuronatlas.atlas import open_atlas

    atlas = open_atlas(atlas_path)
    try:
        df = atlas.query(sql)
    except duckdb.Error as exc:
        raise NeuronAtlasError(
            f"The query failed: {str(exc).splitlines()[0]}. The tables are units, exemplars, "
            f'tokens and docs; `neuronatlas query {atlas_path} "describe units"` lists columns.'
        ) from None
    if csv:
        df.to_csv(sys.stdout, index=False)
        return
    if as_json:
        sys.stdout.write(df.to_json(orient="records", default_handler=str) + "\n")
        return
    table = Table(
        caption=f"{len(df):,} rows" + (f" (first {limit} shown)" if len(df) > limit else "")
    )
    for col in df.columns:
        table.add_column(
            escape(str(col)), justify="right" if df[col].dtype.kind in "iuf" else "left"
        )
    for row in df.head(limit).itertuples(index=False):
        table.add_row(*(escape(_cell(v)) for v in row))
    console.print(table)


def _cell(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, (list, dict)):
        s = json.dumps(v, default=str)
        return s if len(s) < 60 else s[:57] + "…"
    return str(v)
