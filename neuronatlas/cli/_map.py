"""``neuronatlas map``: build an atlas (no arguments: the bundled MiniLM over Python's docs)."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from neuronatlas.cli._app import command, console

DEFAULT_OUT = "atlases/minilm-pydocs"


@command("map")
def map_(
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Hugging Face hub id, local model folder, or package.module:factory. "
        "Default: the MiniLM sentence encoder packaged with neuronatlas's demo extra.",
    ),
    data: str = typer.Option(
        None,
        "--data",
        "-d",
        help="A .txt file, a folder of .txt, a JSONL/CSV/Parquet file with a text column, or a "
        "Hugging Face dataset. Default: the documentation that ships with Python.",
    ),
    sites: str = typer.Option(
        "mlp", "--sites", "-s", help="Presets (mlp, resid) or module globs, comma-separated."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help=f"Atlas directory. Default: {DEFAULT_OUT} (or atlases/<model>)."
    ),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Stop after this many tokens."),
    context: int = typer.Option(10, "--context", help="Tokens kept on each side of an exemplar."),
    top_k: int = typer.Option(20, "--top-k", help="Exemplars kept per unit."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sequences per forward pass."),
    window: int = typer.Option(
        256, "--window", help="Longest sequence fed to the model, in tokens."
    ),
    text_column: str = typer.Option("text", "--text-column", help="Text column of a table corpus."),
    threshold: float = typer.Option(0.0, "--threshold", help="Activity threshold of frac_above."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1, mps … Default: cpu."),
    dtype: str = typer.Option(
        None, "--dtype", help="float32, float16 or bfloat16. Default: the model's."
    ),
    keep_activations: bool = typer.Option(
        False, "--keep-activations", help="Also write the raw activations (activation store)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Overwrite an atlas built with other settings."
    ),
) -> None:
    """Record a model over a corpus in one pass and write its neuron atlas."""
    from neuronatlas.atlas import build_atlas

    if out is None:
        out = Path(DEFAULT_OUT if model is None else "atlases/" + _slug(model))
    console.print(
        f"Mapping [bold]{model or 'MiniLM (packaged)'}[/] over "
        f"[bold]{data or 'the Python documentation'}[/] → {out}"
    )
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tokens · {task.fields[rate]} tok/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    task = bar.add_task("recording", total=max_tokens, rate="–")

    def on_progress(p) -> None:
        if not bar.live.is_started:  # started at the first batch, after every input is checked
            bar.start()
        rate = (p.tokens - p.resumed_from) / max(p.elapsed_s, 1e-9)
        bar.update(task, completed=p.tokens, rate=f"{rate:,.0f}")

    try:
        atlas = build_atlas(
            model,
            data,
            out=out,
            sites=sites,
            top_k=top_k,
            context=context,
            threshold=threshold,
            window=window,
            batch_size=batch_size,
            max_tokens=max_tokens,
            device=device,
            dtype=dtype,
            keep_activations=keep_activations,
            text_column=text_column,
            force=force,
            progress=on_progress,
        )
        if bar.live.is_started:
            bar.update(task, total=atlas.manifest["corpus"]["n_tokens"], description="done")
    finally:
        bar.stop()
    _summary(atlas)


def _summary(atlas) -> None:
    m = atlas.manifest
    t = m.get("timings", {})
    n_units = sum(s["n_units"] for s in m["sites"])
    console.print(
        f"[green]✓[/] {n_units:,} units in {len(m['sites'])} sites over "
        f"{m['corpus']['n_tokens']:,} tokens ({m['corpus']['n_docs']:,} sequences) in "
        f"{t.get('total_s', 0):.1f} s ({t.get('tokens_per_s', 0):,.0f} tokens/s; forward pass "
        f"{t.get('forward_s', 0):.1f} s)"
    )
    bad = {s: c for s, c in m.get("nonfinite", {}).items() if any(c.values())}
    if bad:
        console.print("[yellow]non-finite activations (counted, kept out of the statistics):[/]")
        for site, c in bad.items():
            console.print(
                f"  {site}: {c['n_nan']:,} NaN, {c['n_posinf']:,} +Inf, {c['n_neginf']:,} -Inf"
            )
    console.print(
        f"Atlas written to [bold]{atlas.path}[/]. Next: `neuronatlas info {atlas.path}`, "
        f"`neuronatlas view {atlas.path}`."
    )


def _slug(spec: str) -> str:
    name = spec.rstrip("/").split("/")[-1].split(":")[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "atlas"
