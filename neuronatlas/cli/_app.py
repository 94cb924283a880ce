"""The typer application shared by every verb, and the error boundary of the CLI."""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any

import typer
from rich.console import Console

from neuronatlas.errors import NeuronAtlasError

app = typer.Typer(
    name="neuronatlas",
    help="Map what every unit of a neural network does: record, characterize, browse, query.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# A pipe or a CI log gets 120 columns rather than Rich's default of 80.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def command(
    *args: Any, on: typer.Typer | None = None, **kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a verb on :data:`app` (or on the verb group ``on``, see :func:`group`); a
    :class:`NeuronAtlasError` becomes a one-line message.

    Users see what went wrong and what to do, not a traceback from deep inside.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                return fn(*a, **kw)
            except NeuronAtlasError as exc:
                err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
                raise typer.Exit(code=2) from None

        return (on or app).command(*args, **kwargs)(wrapper)

    return decorate


def group(name: str, help: str) -> typer.Typer:
    """A verb group (``neuronatlas NAME VERB ...``) on :data:`app`; register its verbs with
    ``@command("verb", on=the_group)``."""
    sub = typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.add_typer(sub, name=name)
    return sub


def load_verbs(modules: Iterable[str]) -> None:
    """Import the verb modules (each registers itself with :func:`command`)."""
    for name in modules:
        try:
            importlib.import_module(f"neuronatlas.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"neuronatlas.cli.{name}":
                raise
