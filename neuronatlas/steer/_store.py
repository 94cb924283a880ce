"""Steering results kept in an atlas: ``ATLAS/analyses/steer/<name>/``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neuronatlas.steer._errors import SteeringError
from neuronatlas.steer._vector import SteeringVector, save_vectors

__all__ = ["SWEEP_COLUMNS", "load_sweep", "save_sweep"]

KIND = "steer"
SWEEP_FILE = "sweep.parquet"
VECTORS_STEM = "vectors"
#: columns every saved sweep has (others are kept too)
SWEEP_COLUMNS = ("site", "layer", "method", "coef", "behaviour", "ppl", "ppl_ratio", "kl")


def save_sweep(
    atlas: str | os.PathLike[str],
    name: str,
    sweep: Any,
    *,
    vectors: Sequence[SteeringVector] = (),
    behaviour: str = "behaviour",
    **meta: Any,
) -> dict[str, Any]:
    """Write a sweep table (and its vectors) as analysis ``steer/<name>`` of ``atlas``.

    Files: ``sweep.parquet`` (the DataFrame of :func:`~neuronatlas.steer.sweep`),
    ``vectors.safetensors`` + ``vectors.json`` when ``vectors`` are given. The manifest entry
    holds ``behaviour`` (what the metric is), the methods, sites and coefficients, and
    ``meta``.

    Returns:
        The manifest entry.
    """
    from neuronatlas.atlas import add_analysis, analysis_dir

    missing = [c for c in SWEEP_COLUMNS if c not in getattr(sweep, "columns", [])]
    if missing:
        raise SteeringError(
            f"save_sweep: the table lacks columns {missing}; pass the DataFrame returned by sweep()."
        )
    folder = analysis_dir(atlas, KIND, name)
    tmp = folder / (SWEEP_FILE + ".tmp")
    sweep.to_parquet(tmp, index=False)
    os.replace(tmp, folder / SWEEP_FILE)
    files = [SWEEP_FILE]
    if vectors:
        st, js = save_vectors(folder / VECTORS_STEM, list(vectors))
        files += [st.name, js.name]
    return add_analysis(
        atlas,
        KIND,
        name,
        files=files,
        behaviour=behaviour,
        methods=sorted({str(m) for m in sweep["method"]}),
        sites=list(dict.fromkeys(str(s) for s in sweep["site"])),
        coefs=sorted({float(c) for c in sweep["coef"]}),
        **meta,
    )


def load_sweep(atlas: str | os.PathLike[str], name: str) -> Any:
    """The sweep DataFrame of analysis ``steer/<name>``."""
    import pandas as pd

    from neuronatlas.atlas import get_analysis

    entry = get_analysis(atlas, KIND, name)
    return pd.read_parquet(Path(atlas) / entry["path"] / SWEEP_FILE)
