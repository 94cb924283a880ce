"""The ``neuronatlas`` command.

Each verb lives in its own module (``_map.py``, ``_read.py``, ``_view.py``, …) and registers
itself on :data:`app` through :func:`neuronatlas.cli._app.command`; this file only wires them.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

_VERB_MODULES = ("_map", "_read", "_view")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``neuronatlas`` console script."""
    try:
        from neuronatlas.cli._app import app, load_verbs
    except ImportError as exc:  # the CLI extra is missing
        print(
            f"The neuronatlas command needs typer and rich ({exc}). "
            "Install them with: pip install 'neuronatlas[cli]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from exc
    load_verbs(_VERB_MODULES)
    app(args=argv, prog_name="neuronatlas")
