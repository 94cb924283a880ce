"""The activation store: raw activations of many sites on disk, for analyses that need them.

One zarr v3 array ``(row, unit)`` per site plus a Parquet index of ``(doc, pos, token_id)``
per row; append-only with atomic commits, resumable after a kill, read back in bounded memory.
The on-disk format and the commit protocol are in docs/store.md.

Examples:
    >>> import tempfile, torch
    >>> from neuronatlas.store import ActivationStore
    >>> store = ActivationStore.create(tempfile.mkdtemp() + "/s", sites={"mlp.0": 8})
    >>> _ = store.append({"mlp.0": torch.randn(5, 8)}, doc=[0] * 5, pos=range(5))
    >>> store.close()
    >>> store.read("mlp.0").shape
    (5, 8)
"""

from __future__ import annotations

from neuronatlas.store._format import FORMAT_NAME as FORMAT_NAME
from neuronatlas.store._format import FORMAT_VERSION as FORMAT_VERSION
from neuronatlas.store._format import SiteInfo as SiteInfo
from neuronatlas.store._minibatch import minibatches as minibatches
from neuronatlas.store._store import ActivationStore as ActivationStore
from neuronatlas.store._subsample import subsample_mask as subsample_mask

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ActivationStore",
    "SiteInfo",
    "minibatches",
    "subsample_mask",
]
