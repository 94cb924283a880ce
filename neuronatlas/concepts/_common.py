"""Pieces shared by the concept analyses: errors, the atlas's store, results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neuronatlas.errors import NeuronAtlasError

if TYPE_CHECKING:
    import pandas as pd

    from neuronatlas.atlas import Atlas
    from neuronatlas.store import ActivationStore

__all__ = ["ConceptError", "atlas_store", "save_table", "to_atlas"]


class ConceptError(NeuronAtlasError, ValueError):
    """Bad arguments or data for a probe or a concept decomposition."""


def to_atlas(atlas: str | Path | Atlas) -> Atlas:
    """An :class:`~neuronatlas.atlas.Atlas` from an atlas or its path."""
    from neuronatlas.atlas import Atlas, open_atlas

    return atlas if isinstance(atlas, Atlas) else open_atlas(atlas)


def atlas_store(atlas: Atlas) -> ActivationStore:
    """The activation store kept inside ``atlas``, opened for reading.

    Raises:
        ConceptError: the atlas was built without ``keep_activations``.
    """
    from neuronatlas.store import ActivationStore

    info = atlas.manifest.get("store")
    if not info:
        raise ConceptError(
            f"The atlas at {str(atlas.path)!r} holds no raw activations, which probes and concept "
            "decompositions read. Build it again with `neuronatlas map ... --keep-activations` "
            "(Python: build_atlas(..., keep_activations=True))."
        )
    return ActivationStore.open(atlas.path / info["path"])


def check_site(atlas: Atlas, store: ActivationStore, site: str) -> None:
    """Raise a clear error when ``site`` is not a site of the atlas or not in its store."""
    atlas.site_info(site)  # SiteError listing the sites
    if site not in store.sites:
        raise ConceptError(
            f"Site {site!r} is in the atlas but not in its activation store, which holds "
            f"{list(store.sites)}."
        )


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
