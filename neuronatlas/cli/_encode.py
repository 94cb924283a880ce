"""``neuronatlas brain import`` (a recording → a brain atlas) and ``neuronatlas encode``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from neuronatlas.cli._app import command, console, group
from neuronatlas.errors import DataError

brain_app = group(
    "brain",
    "Recorded brain data as units: import a recording (NWB, NIfTI, arrays) as an atlas.",
)


def _floats(values: list[str] | None, what: str) -> list[float] | None:
    if not values:
        return None
    out = []
    for v in values:
        for part in v.split(","):
            if part.strip():
                try:
                    out.append(float(part))
                except ValueError:
                    raise DataError(
                        f"{what} must be numbers (e.g. 0.1,1,10); got {part!r}."
                    ) from None
    return out


def _ints(values: list[str] | None, what: str) -> list[int] | None:
    vals = _floats(values, what)
    if vals is None:
        return None
    if any(v != int(v) for v in vals):
        raise DataError(f"{what} must be integers (samples); got {vals}.")
    return [int(v) for v in vals]


@command("import", on=brain_app)
def brain_import(
    source: Path = typer.Argument(
        ..., metavar="RECORDING", help=".nwb, .nii/.nii.gz, .npz, .parquet or .csv"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The brain atlas directory to write."),
    stimuli: Path | None = typer.Option(
        None, "--stimuli", help="Stimulus table (name, text and/or doc)."
    ),
    fmt: str = typer.Option("auto", "--format", help="auto | nwb | nifti | arrays"),
    model_atlas: Path | None = typer.Option(
        None, "--model-atlas", help="Align the stimuli to this atlas's docs by text."
    ),
    mask: Path | None = typer.Option(
        None, "--mask", help="NIfTI: mask or label image of the voxels to keep."
    ),
    events: Path | None = typer.Option(
        None, "--events", help="NIfTI: events table (onset, duration, stimulus)."
    ),
    tr: float | None = typer.Option(
        None, "--tr", help="NIfTI: repetition time in s (default: header)."
    ),
    hrf_delay: float = typer.Option(
        4.0, "--hrf-delay", help="NIfTI: seconds added to event windows."
    ),
    responses: str = typer.Option("units", "--responses", help="NWB: units (spike rates) or roi."),
    intervals: str = typer.Option(
        "trials", "--intervals", help="NWB: the intervals table of trials."
    ),
    stimulus_column: str = typer.Option(
        "stimulus", "--stimulus-column", help="Column naming each trial's stimulus."
    ),
    offset: float = typer.Option(0.0, "--offset", help="NWB: seconds added to each trial window."),
    top_k: int = typer.Option(20, "--top-k", help="Exemplar stimuli kept per unit."),
    force: bool = typer.Option(False, "--force", help="Replace an existing directory."),
) -> None:
    """Turn a recording into a brain atlas: units with statistics and exemplar stimuli."""  # fmt: skip
    from neuronatlas.brain import align_stimuli, load_recording, write_brain_atlas

    kwargs: dict[str, Any] = {}
    kind = fmt
    name = source.name
    if kind == "auto":
        kind = (
            "nwb"
            if name.endswith(".nwb")
            else "nifti"
            if name.endswith((".nii", ".nii.gz"))
            else "arrays"
        )
    if stimuli is not None:
        kwargs["stimuli"] = stimuli
    if kind == "nwb":
        kwargs.update(responses=responses, intervals=intervals, stimulus_column=stimulus_column,
                      offset=offset)  # fmt: skip
    elif kind == "nifti":
        if mask is None:
            raise DataError("Importing NIfTI needs --mask (the voxels to keep).")
        kwargs.update(mask=mask, events=events, tr=tr, hrf_delay=hrf_delay)
    else:
        kwargs["stimulus_column"] = stimulus_column
    rec = load_recording(source, format=kind, **kwargs)
    if model_atlas is not None:
        rec = align_stimuli(rec, model_atlas)
    path = write_brain_atlas(rec, out, top_k=top_k, force=force)
    counts = rec.repeats_per_stimulus()
    console.print(
        f"✓ {rec.n_units:,} units in {len(rec.sites)} sites, {rec.n_stimuli:,} stimuli, "
        f"{rec.n_trials:,} trials ({int(counts.min())}-{int(counts.max())} per stimulus)"
    )
    console.print(
        f"Brain atlas written to {escape(str(path))}. Next: `neuronatlas view {escape(str(path))}`."
    )


@command("encode")
def encode_cmd(
    atlas: Path = typer.Argument(..., metavar="ATLAS", help="Model atlas with stored activations."),
    brain: Path = typer.Argument(
        ..., metavar="BRAIN", help="Brain atlas (neuronatlas brain import)."
    ),
    site: list[str] = typer.Option(
        ..., "--site", help="Model site(s); globs and commas allowed; repeatable."
    ),
    pool: str = typer.Option(
        "mean", "--pool", help="Tokens → stimulus vector: mean | first | last | max."
    ),
    alphas: list[str] | None = typer.Option(
        None,
        "--alphas",
        help="Ridge strengths, e.g. 1e-2,1e-1,…,1e7 (default: 10 from 1e-2 to 1e7).",
    ),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds."),
    delays: list[str] | None = typer.Option(
        None, "--delays", help="FIR lags in stimuli, e.g. 1,2,3,4."
    ),
    name: str = typer.Option(
        "default", "--name", help="Name of the analysis (analyses/encoding/NAME)."
    ),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | float64"),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 …"),
) -> None:
    """Encoding models: model features of each site → every brain unit, with noise ceilings."""  # fmt: skip
    import torch

    from neuronatlas.brain import DEFAULT_ALPHAS, encode

    if dtype not in ("float32", "float64"):
        raise DataError(f"--dtype must be float32 or float64; got {dtype!r}.")
    res = encode(
        atlas, brain, site, pool=pool, alphas=_floats(alphas, "--alphas") or DEFAULT_ALPHAS,
        folds=folds, delays=_ints(delays, "--delays"), name=name,
        dtype=getattr(torch, dtype), device=device,
    )  # fmt: skip
    table = Table(title="encoding scores (median over units)", title_justify="left")
    for col in ("model site", "region", "units", "r", "R²", "r / ceiling"):
        table.add_column(col, justify="left" if col in ("model site", "region") else "right")
    for r in res.summary.itertuples():
        table.add_row(
            escape(str(r.model_site)), escape(str(r.site)), f"{r.n_units:,}", f"{r.median_r:.3f}",
            f"{r.median_r2:.3f}", "–" if r.median_r_norm != r.median_r_norm else f"{r.median_r_norm:.3f}",
        )  # fmt: skip
    console.print(table)
    for region, best in (res.entry or {}).get("best_site", {}).items():
        console.print(f"best site for {escape(region)}: {escape(best)}")
    console.print(f"Saved in {escape(str(res.path))}.")
