"""``neuronatlas heads`` (score every attention head) and ``neuronatlas experiment induction``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neuronatlas.cli._app import command, console, group

experiment = group("experiment", "Built-in experiments (trained on first use, cached).")


def _top(table: Any, columns: list[str], k: int = 3) -> None:
    from rich.table import Table

    t = Table(title="Top heads per score", show_lines=False)
    t.add_column("score")
    t.add_column(f"top {k} (layer.head = score)")
    for col in columns:
        if col not in table:
            continue
        best = table.sort_values(col, ascending=False).head(k)
        t.add_row(
            col,
            ", ".join(f"L{r.layer}H{r.head} = {getattr(r, col):.3f}" for r in best.itertuples()),
        )
    console.print(t)


_SHOWN = ["previous_token", "duplicate_token", "induction", "retrieval", "sink", "copying",
          "copying_top10", "qk_same_token"]  # fmt: skip


@command("heads", help="Score every attention head of an atlas's model (or of a model).")
def heads(
    target: Annotated[
        str, typer.Argument(help="An atlas directory (scores are added to it) or a model spec.")
    ],
    model: Annotated[
        str | None,
        typer.Option(help="Model spec, for an atlas: default the one it was built from."),
    ] = None,
    name: Annotated[str, typer.Option(help="Analysis name (analyses/heads/NAME).")] = "scores",
    n_seq: Annotated[int, typer.Option(min=1, help="Random sequences per score.")] = 16,
    texts: Annotated[
        int,
        typer.Option(
            min=0, help="Atlas corpus sequences for the sink scores (0: random sequences)."
        ),
    ] = 64,
    weights: Annotated[bool, typer.Option(help="Also the weight-only OV/QK scores.")] = True,
    prompt: Annotated[
        list[str] | None, typer.Option(help="Text whose attention patterns are kept (repeatable).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Model mode: write the table here (.parquet or .csv).")
    ] = None,
) -> None:
    from neuronatlas.heads import score_heads
    from neuronatlas.heads._atlas import score_atlas

    if (Path(target) / "atlas.json").is_file():
        entry = score_atlas(
            target, model, name=name, n_texts=texts, n_seq=n_seq, weights=weights, prompts=prompt
        )
        import pandas as pd

        table = pd.read_parquet(Path(target) / entry["path"] / "scores.parquet")
        _top(table, _SHOWN)
        console.print(
            f"✓ {entry['n_heads']} heads scored into {target}/{entry['path']}. "
            f"Next: `neuronatlas view {target}` → Heads."
        )
        return
    from neuronatlas.models import load_model

    loaded = load_model(model or target)
    table = score_heads(loaded.model, loaded.tokenizer, n_seq=n_seq, weights=weights)
    _top(table, _SHOWN)
    if out is not None:
        if out.suffix == ".csv":
            table.to_csv(out, index=False)
        else:
            table.to_parquet(out, index=False)
        console.print(f"✓ {len(table)} heads written to {out}")


@command(
    "induction",
    on=experiment,
    help="Train 2-layer and 1-layer attention-only models on repeated segments; watch induction heads form, then ablate them.",
)
def induction(
    out: Annotated[
        Path | None, typer.Option(help="Results folder (default ~/.cache/neuronatlas/induction).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Training steps per model (default 1500).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Model and data seed.")] = 0,
    force: Annotated[bool, typer.Option(help="Retrain even if cached.")] = False,
) -> None:
    from dataclasses import replace

    from neuronatlas.heads._induction import InductionConfig, run_induction

    cfg = InductionConfig(seed=seed)
    if steps:
        cfg = replace(cfg, steps=steps)
    res = run_induction(
        cfg, out, force=force, progress=lambda line: console.print(line, highlight=False)
    )
    s = res.summary
    console.print(f"Results in {res.folder} (chance accuracy {s['chance_acc']:.3f})")
    for n, m in s["models"].items():
        pc = m["phase_change_step"]
        console.print(
            f"[bold]{n}-layer[/]: phase change at step {pc if pc is not None else 'never'}; final "
            f"in-context accuracy {m['final']['ic_acc']:.3f}, max induction score "
            f"{m['max_induction']:.2f}"
        )
        for row in m["ablations"]:
            heads = ", ".join(row["heads"]) or "—"
            console.print(
                f"  ablate {row['ablated']:<45} ({heads}): in-context accuracy {row['ic_acc']:.3f}",
                highlight=False,
            )
