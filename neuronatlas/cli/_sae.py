"""``neuronatlas sae train | eval | map | list``: sparse autoencoders on an atlas's activations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from neuronatlas.cli._app import command, console, group

sae_app = group(
    "sae",
    "Sparse autoencoders: train on an atlas's stored activations, evaluate, map features to units.",
)


def _print_metrics(metrics: dict[str, Any]) -> None:
    table = Table(title="evaluation", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(table)


@command("train", on=sae_app)
def train(
    atlas: Path = typer.Argument(..., metavar="ATLAS", help="Atlas built with --keep-activations."),
    site: str = typer.Option(..., "--site", help="Site of the activation store to read."),
    arch: str = typer.Option("topk", "--arch", help="relu, topk, batchtopk or jumprelu."),
    width: int = typer.Option(None, "--width", help="Features (default 8 x the site's units)."),
    k: float = typer.Option(32, "--k", help="Active features per input (topk, batchtopk)."),
    l1: float = typer.Option(5.0, "--l1", help="L1 coefficient (relu)."),
    l0: float = typer.Option(2.0, "--l0", help="L0 coefficient (jumprelu)."),
    steps: int = typer.Option(None, "--steps", help="Optimizer steps (default: one pass)."),
    tokens: int = typer.Option(None, "--tokens", help="Training inputs instead of --steps."),
    lr: float = typer.Option(4e-4, "--lr", help="Adam learning rate."),
    batch_size: int = typer.Option(4096, "--batch-size", help="Inputs per step."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, … (default: CUDA if available)."),
    name: str = typer.Option(None, "--name", help="Name of the SAE (default <arch>-<width>)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialization and data order."),
    encoder_init_norm: float = typer.Option(
        0.1, "--encoder-init-norm", help="Norm of the encoder's columns at initialization."
    ),
    decoder_lr_scale: float = typer.Option(
        10.0, "--decoder-lr-scale", help="The decoder learns at this times --lr."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the SAE's checkpoint."),
    map_units: bool = typer.Option(
        False, "--map", help="Then add its features to the atlas as units."
    ),
) -> None:
    """Train an SAE on one site of an atlas; it is saved in ATLAS/analyses/sae/NAME/."""
    from neuronatlas.atlas import open_atlas
    from neuronatlas.sae._atlas import train_atlas_sae
    from neuronatlas.sae._map import map_sae
    from neuronatlas.sae._registry import get_architecture

    get_architecture(arch)  # an unknown name fails before anything is read or printed
    at = open_atlas(atlas)
    at.store(site)  # so does an atlas without stored activations, or without this site
    d_in = next((s["n_units"] for s in at.manifest["sites"] if s["name"] == site), None)
    width = width or (8 * d_in if d_in else None)
    settings: dict[str, Any] = {"seed": seed, "encoder_init_norm": encoder_init_norm}
    if arch == "topk":
        settings["k"] = int(k)
    elif arch == "batchtopk":
        settings["k"] = float(k)
    elif arch == "relu":
        settings["l1_coefficient"] = l1
    elif arch == "jumprelu":
        settings["l0_coefficient"] = l0
    name = name or f"{arch}-{width}"
    console.print(
        f"Training a [bold]{arch}[/] SAE '{escape(name)}' on {escape(site)} of {escape(str(atlas))}"
    )
    sae, metrics = train_atlas_sae(
        at,
        site=site,
        name=name,
        arch=arch,
        d_sae=width,
        sae_settings=settings,
        resume=resume,
        steps=steps,
        n_samples=tokens,
        batch_size=batch_size,
        lr=lr,
        decoder_lr_scale=decoder_lr_scale,
        seed=seed,
        device=device,
        progress=True,
    )
    _print_metrics(metrics)
    if map_units:
        entry = map_sae(at, sae, name=name, site=site, device=device)
        console.print(
            f"Mapped {entry['n_units']:,} features as site [bold]{escape(entry['name'])}[/]."
        )
    console.print(f"Saved to {escape(str(at.path / 'analyses' / 'sae' / name))}")


@command("eval", on=sae_app)
def eval_(
    atlas: Path = typer.Argument(..., metavar="ATLAS", help="Atlas with the SAE."),
    name: str = typer.Option(..., "--name", help="The SAE (analyses/sae/NAME)."),
    max_samples: int = typer.Option(None, "--max-samples", help="Rows of the store to evaluate."),
    ce_docs: int = typer.Option(
        0, "--ce-docs", help="Also the loss recovered on this many sequences (causal LMs)."
    ),
    device: str = typer.Option(None, "--device", help="cpu, cuda, …"),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Evaluate an atlas's SAE: MSE, variance explained, L0, dead/dense, loss recovered."""
    from neuronatlas.sae._atlas import evaluate_atlas_sae

    metrics = evaluate_atlas_sae(
        atlas, name, max_samples=max_samples, ce_docs=ce_docs, device=device
    )
    if as_json:
        print(json.dumps(metrics))
    else:
        _print_metrics(metrics)


@command("map", on=sae_app)
def map_(
    atlas: Path = typer.Argument(..., metavar="ATLAS", help="Atlas built with --keep-activations."),
    name: str = typer.Option(..., "--name", help="Name of the SAE in the atlas."),
    sae: Path = typer.Option(
        None, "--sae", help="An SAE folder (SAELens layout); default analyses/sae/NAME."
    ),
    site: str = typer.Option(None, "--site", help="Source site (default: the SAE's hook_name)."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, …"),
) -> None:
    """Add an SAE's features to the atlas as units of the site '<site>@sae:<name>'."""
    from neuronatlas.atlas import get_analysis
    from neuronatlas.sae._map import map_sae

    folder = sae if sae is not None else Path(atlas) / get_analysis(atlas, "sae", name)["path"]
    entry = map_sae(atlas, folder, name=name, site=site, device=device)
    console.print(
        f"Mapped {entry['n_units']:,} features as site [bold]{escape(entry['name'])}[/]. "
        f"Browse them with `neuronatlas view {escape(str(atlas))}`."
    )


@command("list", on=sae_app)
def list_(atlas: Path = typer.Argument(..., metavar="ATLAS", help="Atlas directory.")) -> None:
    """List the SAEs of an atlas with their site, size and figures."""
    from neuronatlas.atlas import list_analyses

    table = Table(title="SAEs", title_justify="left")
    for col in ("name", "architecture", "site", "features", "L0", "var. explained", "mapped as"):
        table.add_column(col)
    for e in list_analyses(atlas, "sae"):
        m = e.get("metrics", {})
        table.add_row(
            escape(e["name"]),
            str(e.get("architecture", "")),
            escape(str(e.get("site", ""))),
            str((e.get("settings") or {}).get("d_sae", "")),
            f"{m['l0']:.1f}" if "l0" in m else "",
            f"{m['variance_explained']:.3f}" if "variance_explained" in m else "",
            escape(str(e.get("derived_site", ""))),
        )
    console.print(table)
