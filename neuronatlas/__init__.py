"""neuronatlas: map what every unit of a neural network does.

Importing this package is cheap and has no side effects: the public names below are loaded on
first use, and heavy dependencies (transformers, duckdb, zarr, the viewer) only when needed.

Examples:
    >>> import neuronatlas
    >>> neuronatlas.__version__
    '0.1.0'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "build_atlas": "neuronatlas.atlas",
    "open_atlas": "neuronatlas.atlas",
    "Atlas": "neuronatlas.atlas",
    "Recorder": "neuronatlas.record",
    "Site": "neuronatlas.sites",
    "resolve_sites": "neuronatlas.sites",
    "NeuronAtlasError": "neuronatlas.errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]

if TYPE_CHECKING:
    from neuronatlas.atlas import Atlas as Atlas
    from neuronatlas.atlas import build_atlas as build_atlas
    from neuronatlas.atlas import open_atlas as open_atlas
    from neuronatlas.errors import NeuronAtlasError as NeuronAtlasError
    from neuronatlas.record import Recorder as Recorder
    from neuronatlas.sites import Site as Site
    from neuronatlas.sites import resolve_sites as resolve_sites


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'neuronatlas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
