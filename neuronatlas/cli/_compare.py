"""``neuronatlas compare``: a layer × layer similarity matrix of two atlases, with CIs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from neuronatlas.cli._app import command, console


def _parse_options(items: list[str]) -> dict[str, object]:
    from neuronatlas.compare import CompareError

    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CompareError(f"--option takes KEY=VALUE (e.g. comparison=corr); got {item!r}.")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _short(site: str) -> str:
    return site.replace("encoder.", "").replace(".output.dense:input", ".mlp")


@command("compare")
def compare(
    atlas_a: Path = typer.Argument(
        ..., metavar="A", help="Atlas with stored activations; results are saved in it."
    ),
    atlas_b: Path = typer.Argument(
        ...,
        metavar="B",
        help="Other atlas, a brain atlas (layer × region), or A again (layer × layer).",
    ),
    measure: str = typer.Option(
        "cka",
        "--measure",
        "-m",
        help="cka, cka-debiased, cka-rbf, cka-rbf-debiased, rsa, trsa, shape, svcca, cca.",
    ),
    sites: str = typer.Option(
        None,
        "--sites",
        help="Sites of A (comma-separated names or globs); default: every stored site.",
    ),
    sites_b: str = typer.Option(
        None,
        "--sites-b",
        help="Sites (or regions of a brain atlas) of B; default: --sites when B is A, else all.",
    ),
    pool: str = typer.Option(
        "mean",
        "--pool",
        help="How a sequence's tokens become one stimulus vector: mean, first, last, max.",
    ),
    permutations: int = typer.Option(
        0, "--permutations", help="Permutations of stimuli for p-values (0 = none)."
    ),
    bootstrap: int = typer.Option(
        0, "--bootstrap", help="Bootstrap draws of stimuli for confidence intervals (0 = none)."
    ),
    level: float = typer.Option(0.95, "--level", help="Confidence level of the intervals."),
    align: str = typer.Option(
        "auto", "--align", help="Match stimuli by 'source' (text and offset), 'doc' id, or 'auto'."
    ),
    option: list[str] = typer.Option(
        [],
        "--option",
        "-o",
        help="Measure option KEY=VALUE, e.g. comparison=corr, rdm=euclidean, alpha=0.5.",
    ),
    name: str = typer.Option(
        None, "--name", help="Analysis name (default: <measure>-<B folder | self>)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of permutations and bootstrap draws."),
    device: str = typer.Option(None, "--device", help="Where to compute (cpu, cuda); default cpu."),
) -> None:
    """Compare the sites of two atlases on their shared stimuli and save the matrix into A."""  # fmt: skip
    from neuronatlas.compare import compare_atlases

    same = atlas_a.resolve() == atlas_b.resolve()
    table = compare_atlases(
        atlas_a, atlas_b, sites_a=sites, sites_b=sites_b if sites_b or not same else sites,
        measure=measure, pool=pool, n_perm=permutations, n_boot=bootstrap, level=level,
        align=align, name=name, seed=seed, device=device, **_parse_options(option),
    )  # fmt: skip
    info = table.attrs.get("alignment", {})
    rows = list(dict.fromkeys(table["site_a"]))
    cols = list(dict.fromkeys(table["site_b"]))
    value = {(r.site_a, r.site_b): r for r in table.itertuples()}
    t = Table(
        title=f"{measure} on {info.get('n_shared')} shared stimuli (rows: A, columns: B)"
        + (escape(f"; [lo, hi] = {level:.0%} bootstrap CI") if bootstrap else "")
        + ("; p = permutation p-value" if permutations else ""),
        title_justify="left",
    )
    t.add_column("site")
    for c in cols:
        t.add_column(escape(_short(c)), justify="right")
    for r in rows:
        cells = []
        for c in cols:
            x = value[(r, c)]
            cell = f"{x.value:.3f}"
            if bootstrap and not math.isnan(x.ci_low):
                cell += f" [{x.ci_low:.2f}, {x.ci_high:.2f}]"
            if permutations:
                cell += f" p={x.p:.2g}"
            cells.append(cell)
        t.add_row(escape(_short(r)), *cells)
    console.print(t)
    from neuronatlas.compare._compare import FILE, KIND, _default_name

    key = name or _default_name(measure, *_atlases(atlas_a, atlas_b), None)
    console.print(
        f"Saved to {escape(str(atlas_a / 'analyses' / KIND / key / FILE))} "
        f"(matched stimuli by {info.get('align')}). View it: `neuronatlas view {escape(str(atlas_a))}`."
    )


def _atlases(a: Path, b: Path):
    from neuronatlas.atlas import open_atlas

    return open_atlas(a), open_atlas(b)
