"""The ``neuronatlas`` command.

Each verb (or group of verbs) lives in its own module of this package (``_map.py``,
``_read.py``, ``_view.py``, …) and registers itself on :data:`app` through
:func:`neuronatlas.cli._app.command`; every ``_*.py`` module here but ``_app`` is loaded.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def _verb_modules() -> list[str]:
    import pkgutil

    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("_")]
    first = ["_map", "_read", "_view"]  # the core verbs lead the help listing
    return [n for n in first if n in names] + sorted(set(names) - {"_app", *first})


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
    load_verbs(_verb_modules())
    app(args=argv, prog_name="neuronatlas")
