"""Token-level layer × layer CKA of one atlas, streamed from its activation store.

Every stored row (one token) is a stimulus. The rows are read chunk by chunk for all sites in
lockstep and cut into consecutive minibatches of ``batch_size`` rows, which feed
:class:`~neuronatlas.compare.MinibatchCKA` (Nguyen, Raghu & Kornblith, "Do Wide and Deep Networks
Learn the Same Things?", 2021): memory is one chunk per site plus one ``batch × batch`` Gram per
site, whatever the number of tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuronatlas.atlas import open_atlas
from neuronatlas.compare._cka import MinibatchCKA
from neuronatlas.compare._validate import CompareError

if TYPE_CHECKING:
    import pandas as pd

    from neuronatlas.atlas import Atlas

__all__ = ["token_cka"]


def token_cka(
    atlas: Atlas | str | Path,
    sites: Any = None,
    *,
    batch_size: int = 1024,
    max_rows: int | None = None,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Minibatch CKA between every pair of stored sites, over tokens.

    Args:
        atlas: an atlas with stored activations.
        sites: stored sites (names or globs, as in :func:`compare_atlases`); ``None`` = all.
        batch_size: tokens per minibatch (≥ 4; the unbiased HSIC needs 4 rows). A last, shorter
            minibatch is dropped.
        max_rows: stop after this many tokens (``None`` = the whole store).
        device: where the Grams are computed.

    Returns:
        DataFrame ``site_a, site_b, value, n_tokens, n_batches`` (every ordered pair).
    """
    import pandas as pd

    from neuronatlas.compare._compare import _site_list

    if not isinstance(batch_size, int) or batch_size < 4:
        raise CompareError(f"batch_size must be an int ≥ 4; got {batch_size!r}.")
    a = open_atlas(atlas)
    names = _site_list(a, sites)
    store = a.store()
    limit = store.n_rows if max_rows is None else min(int(max_rows), store.n_rows)
    mb = MinibatchCKA(len(names), len(names))
    pending: list[list[np.ndarray]] = [[] for _ in names]
    have = used = 0
    chunks = zip(*(store.iter_chunks(s) for s in names), strict=True)
    for parts in chunks:
        rows = parts[0][0]
        if rows.start >= limit:
            break
        take = min(rows.stop, limit) - rows.start
        for i, (_, values) in enumerate(parts):
            pending[i].append(np.asarray(values[:take], dtype=np.float64))
        have += take
        while have >= batch_size:
            block = [np.concatenate(p) for p in pending]
            xs = [torch.from_numpy(b[:batch_size]) for b in block]
            if device is not None:
                xs = [x.to(device) for x in xs]
            mb.update(xs, xs)
            pending = [[b[batch_size:]] for b in block]
            have -= batch_size
            used += batch_size
    if not mb.n_batches_:
        raise CompareError(
            f"The store holds {limit} rows, fewer than one minibatch of {batch_size}; lower "
            "batch_size."
        )
    m = mb.result().numpy()
    return pd.DataFrame(
        [
            {
                "site_a": sa,
                "site_b": sb,
                "value": float(m[i, j]),
                "n_tokens": used,
                "n_batches": mb.n_batches_,
            }
            for i, sa in enumerate(names)
            for j, sb in enumerate(names)
        ]
    )
