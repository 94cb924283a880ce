"""Pieces shared by the concept analyses: errors, the atlas's store, results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neuronatlas.errors import NeuronAtlasError

if TYPE_CHECKING:
    import pandas as pd


__all__ = ["ConceptError", "save_table"]


class ConceptError(NeuronAtlasError, ValueError):
    """Bad arguments or data for a probe or a concept decomposition."""


def save_table(df: pd.DataFrame, path: Path) -> str:
    """Write ``df`` as Parquet at ``path``; return the file name."""
    df.to_parquet(path, index=False)
    return path.name


def save_json(obj: Any, path: Path) -> str:
    """Write ``obj`` as JSON at ``path`` (numpy scalars converted); return the file name."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"not JSON serializable: {type(o).__name__}")

    path.write_text(json.dumps(obj, indent=2, default=default) + "\n")
    return path.name
