"""``neuronatlas steer compute | eval | apply``: steering vectors from the shell.

The verbs are thin: they read text files (one example per line), call
:mod:`neuronatlas.steer` and print or write what it returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from neuronatlas.cli._app import command, console, err_console, group

steer_app = group(
    "steer", "Compute steering vectors, evaluate them over layers x coefficients, apply them."
)


def _lines(path: Path, what: str) -> list[str]:
    from neuronatlas.steer import SteeringError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SteeringError(
            f"Cannot read the {what} file {str(path)!r}: {exc.strerror or exc}."
        ) from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise SteeringError(
            f"The {what} file {str(path)!r} has no non-empty lines; give one example per line."
        )
    return lines


def _model(spec: str) -> tuple[Any, Any]:
    from neuronatlas.models import load_model

    lm = load_model(spec)
    return lm.model, lm.tokenizer


def _coefs(text: str) -> list[float]:
    from neuronatlas.steer import SteeringError

    try:
        return [float(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise SteeringError(
            f"--coefs must be comma-separated numbers, e.g. '-4,-2,0,2,4'; got {text!r}."
        ) from None


ModelArg = Annotated[
    str, typer.Argument(help="Model: a local folder, a cached Hub id or package.module:factory.")
]


@command("compute", on=steer_app)
def compute(
    model: ModelArg,
    positive: Annotated[
        Path, typer.Option(help="Text file, one positive (target) example per line.")
    ],
    negative: Annotated[
        Path, typer.Option(help="Text file, one negative (source) example per line.")
    ],
    out: Annotated[Path, typer.Option(help="Output path: writes OUT.safetensors and OUT.json.")],
    sites: Annotated[
        str, typer.Option(help="Site spec: names, globs or a preset (resid, mlp).")
    ] = "resid",
    method: Annotated[
        str, typer.Option(help="caa (mean difference of pairs) or transport (Linear-AcT).")
    ] = "caa",
    reduce: Annotated[
        Optional[str],  # noqa: UP045 - typer needs Optional on Python 3.10
        typer.Option(help="last | mean | all (default: last for caa, all for transport)."),
    ] = None,
    n_quantiles: Annotated[
        Optional[int],  # noqa: UP045 - typer needs Optional on Python 3.10
        typer.Option(
            min=2, help="transport: fit on this many streamed quantiles (bounded memory)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
) -> None:
    """Compute steering vectors from positive/negative examples and save them."""
    from neuronatlas.steer import SteeringError, caa, save_vectors, transport

    m, tok = _model(model)
    pos, neg = _lines(positive, "positive"), _lines(negative, "negative")
    if method == "caa":
        vecs = caa(
            m, pos, neg, sites, tokenizer=tok, reduce=reduce or "last", batch_size=batch_size
        )
    elif method == "transport":
        vecs = transport(
            m, neg, pos, sites, tokenizer=tok, reduce=reduce or "all", batch_size=batch_size
        )
    else:
        raise SteeringError(
            f"--method must be 'caa' or 'transport'; got {method!r}. Function vectors and dynamic "
            "composition need task prompts: use neuronatlas.steer from Python."
        )
    st, js = save_vectors(out, list(vecs.values()))
    for v in vecs.values():
        norm = v.meta.get("norm")
        console.print(
            f"{escape(v.site)}  {v.method}" + (f"  |v| = {norm:.4g}" if norm is not None else "")
        )
    console.print(f"wrote {escape(str(st))} and {escape(str(js))}")


@command("eval", on=steer_app)
def evaluate(
    model: ModelArg,
    vectors: Annotated[
        Path, typer.Argument(help="Vectors written by 'steer compute' (path without suffix).")
    ],
    positive: Annotated[
        Path,
        typer.Option(
            help="Positive examples: the behaviour is log p(pos) - log p(neg), mean over pairs."
        ),
    ],
    negative: Annotated[
        Path, typer.Option(help="Negative examples, paired line by line with --positive.")
    ],
    neutral: Annotated[
        Path, typer.Option(help="Neutral text, one sequence per line, for perplexity and KL.")
    ],
    coefs: Annotated[
        str, typer.Option(help="Comma-separated coefficients (strength for transport).")
    ] = "-4,-2,0,2,4",
    atlas: Annotated[
        Optional[Path], typer.Option(help="Save the sweep as analysis steer/NAME of this atlas.")  # noqa: UP045 - typer needs Optional on Python 3.10
    ] = None,
    name: Annotated[str, typer.Option(help="Analysis name inside the atlas.")] = "sweep",
    csv: Annotated[Optional[Path], typer.Option(help="Also write the table as CSV.")] = None,  # noqa: UP045 - typer needs Optional on Python 3.10
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
) -> None:
    """Sweep the vectors over their sites x coefficients: behaviour, perplexity, KL."""
    from neuronatlas.steer import load_vectors, logprob_margin, save_sweep, sweep

    m, tok = _model(model)
    vecs = load_vectors(vectors)
    metric = logprob_margin(
        _lines(positive, "positive"),
        _lines(negative, "negative"),
        tokenizer=tok,
        batch_size=batch_size,
    )
    table = sweep(
        m,
        vecs,
        _coefs(coefs),
        metric,
        _lines(neutral, "neutral"),
        tokenizer=tok,
        batch_size=batch_size,
        progress=lambda line: err_console.print(escape(line), highlight=False),
    )
    show = Table(title="steering sweep", title_justify="left")
    for col in ("site", "coef", "behaviour", "ppl", "ppl_ratio", "kl"):
        show.add_column(col, justify="left" if col == "site" else "right")
    for r in table.itertuples():
        show.add_row(
            escape(r.site),
            f"{r.coef:g}",
            f"{r.behaviour:.4g}",
            f"{r.ppl:.4g}",
            f"{r.ppl_ratio:.3f}",
            f"{r.kl:.4g}",
        )
    console.print(show)
    console.print(
        f"unsteered: behaviour {table['behaviour_base'].iloc[0]:.4g}, perplexity {table['ppl_base'].iloc[0]:.4g}"
    )
    if csv is not None:
        table.to_csv(csv, index=False)
        console.print(f"wrote {escape(str(csv))}")
    if atlas is not None:
        entry = save_sweep(
            atlas,
            name,
            table,
            vectors=vecs,
            behaviour="log p(positive) - log p(negative)",
            model=model,
        )
        console.print(f"saved analysis {escape(entry['key'])} in {escape(str(atlas))}")


@command("apply", on=steer_app)
def apply(
    model: ModelArg,
    vectors: Annotated[
        Path, typer.Argument(help="Vectors written by 'steer compute' (path without suffix).")
    ],
    prompt: Annotated[list[str], typer.Option(help="Prompt text (repeat for several).")],
    coef: Annotated[float, typer.Option(help="Coefficient (strength for transport).")] = 4.0,
    site: Annotated[
        Optional[str], typer.Option(help="Which vector of the file (default: all of them).")  # noqa: UP045 - typer needs Optional on Python 3.10
    ] = None,
    positions: Annotated[str, typer.Option(help="all | prompt | generated | last_prompt")] = "all",
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 40,
) -> None:
    """Generate from prompts with and without the vectors applied (greedy)."""
    import torch

    from neuronatlas.intervene import intervene
    from neuronatlas.steer import SteeringError, encode, generate, load_vectors

    m, tok = _model(model)
    if tok is None:
        raise SteeringError(f"{model!r} has no tokenizer; 'steer apply' needs one to read prompts.")
    vecs = [v for v in load_vectors(vectors) if site is None or v.site == site]
    if not vecs:
        raise SteeringError(f"{str(vectors)!r} holds no vector for site {site!r}.")
    edits = {v.site: v.edit(coef, positions=positions) for v in vecs}
    seqs = encode(prompt, tok, what="prompt")
    with torch.no_grad():
        plain = generate(m, seqs, max_new_tokens=max_new_tokens)
        with intervene(m, edits):
            steered = generate(m, seqs, max_new_tokens=max_new_tokens)
    for p, a, b in zip(prompt, plain, steered, strict=True):
        console.print(f"[bold]prompt[/]    {escape(p)!r}")
        console.print(f"[bold]unsteered[/] {escape(tok.decode(a))!r}")
        console.print(
            f"[bold]steered[/]   {escape(tok.decode(b))!r}  (coef {coef:g}, {len(edits)} site(s))"
        )
