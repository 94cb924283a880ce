"""``neuronatlas probe`` and ``neuronatlas concepts``: probes and NMF concepts on an atlas."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from neuronatlas.cli._app import command, console

_METHODS = ("linear", "sparse", "net2vec")


def _fmt(v: object) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return escape(str(v))


def _print(df, title: str, columns: list[str]) -> None:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c, justify="left" if c == "site" else "right")
    for row in df[columns].itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


@command("probe")
def probe_cmd(
    atlas_path: Path = typer.Argument(
        ..., metavar="ATLAS", help="Atlas built with --keep-activations."
    ),
    label: str = typer.Option(
        ...,
        "--label",
        help="Token label: code, keyword, keyword_in_code, position, or 'sql:<expression over "
        "doc, pos, token_id, token, text>'.",
    ),
    sites: str = typer.Option(None, "--site", help="Sites, comma-separated (default: all stored)."),
    method: str = typer.Option(
        "linear",
        "--method",
        help="linear (logistic/ridge with control task), sparse (k-sparse probing), net2vec.",
    ),
    max_rows: int = typer.Option(20_000, "--max-rows", help="Rows sampled from the store."),
    name: str = typer.Option(None, "--name", help="Analysis name (default from the label)."),
    ranking: str = typer.Option("mean_diff", "--ranking", help="sparse: mean_diff, l1 or omp."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option(None, "--device", help="cpu, cuda, … Default: cpu."),
) -> None:
    """Probe the sites of an atlas for a token label; results go to ATLAS/analyses/probes/."""
    from neuronatlas.concepts import net2vec_atlas, probe_atlas, sparse_probe_atlas
    from neuronatlas.concepts._common import ConceptError

    if method not in _METHODS:
        raise ConceptError(f"--method must be one of {list(_METHODS)}; got {method!r}.")

    def progress(site: str) -> None:
        console.print(f"  probing {escape(site)}", highlight=False)

    kw = dict(
        sites=sites, name=name, max_rows=max_rows, seed=seed, device=device, progress=progress
    )
    if method == "linear":
        df = probe_atlas(atlas_path, label, **kw)
        _print(
            df,
            f"linear probes for {label!r} ({df['metric'].iloc[0]} on held-out rows)",
            ["site", "score", "control_score", "selectivity", "shuffled_score", "chance", "best"],
        )
    elif method == "sparse":
        curve, neurons = sparse_probe_atlas(atlas_path, label, method=ranking, **kw)
        wide = curve.pivot(index="site", columns="k", values="f1").reset_index()
        wide.columns = [str(c) if c == "site" else f"F1@k={c}" for c in wide.columns]
        _print(wide, f"k-sparse probing for {label!r} (test F1)", list(wide.columns))
        best = neurons.sort_values("accuracy", ascending=False).groupby("site", sort=False).head(1)
        _print(best, "best single neuron per site", ["site", "unit", "f1", "accuracy", "candidate"])
    else:
        df = net2vec_atlas(atlas_path, label, **kw)
        _print(
            df,
            f"Net2Vec for {label!r} (test set IoU)",
            ["site", "iou_combination", "iou_best_unit", "best_unit"],
        )
    console.print(f"Saved under {escape(str(atlas_path))}/analyses/probes/.")


@command("concepts")
def concepts_cmd(
    atlas_path: Path = typer.Argument(
        ..., metavar="ATLAS", help="Atlas built with --keep-activations."
    ),
    site: str = typer.Option(..., "--site", help="The site to factorize."),
    n_concepts: int = typer.Option(16, "--concepts", help="Number of NMF concepts."),
    epochs: int = typer.Option(1, "--epochs", help="Passes over the store."),
    name: str = typer.Option(None, "--name", help="Analysis name."),
    top_k: int = typer.Option(20, "--top-k", help="Top tokens kept per concept."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option(None, "--device", help="cpu, cuda, … Default: cpu."),
) -> None:
    """Fit NMF concept vectors on a site's stored activations (ATLAS/analyses/concepts/)."""
    from neuronatlas.atlas import open_atlas
    from neuronatlas.concepts import concepts_atlas

    atlas = open_atlas(atlas_path)
    _, top, summary = concepts_atlas(
        atlas,
        site,
        n_concepts=n_concepts,
        epochs=epochs,
        top_k=top_k,
        name=name,
        seed=seed,
        device=device,
        progress=lambda phase: console.print(f"  {phase} …"),
    )
    console.print(
        f"relative reconstruction error {summary['relative_error']:.3f}; negative activations "
        f"clipped: {summary['clipped_fraction']:.1%} of the squared norm; {summary['n_rows']:,} rows."
    )
    tokens = atlas.query("select doc, pos, token from tokens")
    shown = top[top["rank"] < 8].merge(tokens, on=["doc", "pos"], how="left")
    table = Table(title="top tokens per concept", title_justify="left")
    table.add_column("concept", justify="right")
    table.add_column("tokens")
    for c, g in shown.groupby("concept"):
        table.add_row(str(c), escape(" ".join(str(t) for t in g.sort_values("rank")["token"])))
    console.print(table)
