"""Stimulus features: one vector per stimulus (doc) and site, read from an atlas's activation store.

A stimulus is a doc, one sequence exactly as the model saw it (docs/architecture.md, "Batches").
Its feature vector pools the activations of its stored rows (one row per token): their mean,
their maximum, or the row of its first or last stored position. The store is read chunk by chunk
(memory: one chunk plus the ``(stimulus, unit)`` result), whatever order the rows were written in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from neuronatlas.atlas import open_atlas
from neuronatlas.errors import DataError, SiteError, closest

if TYPE_CHECKING:
    import pandas as pd

    from neuronatlas.atlas import Atlas

__all__ = ["POOLS", "stimulus_docs", "stimulus_features"]

Pool = Literal["mean", "first", "last", "max"]
POOLS = ("mean", "first", "last", "max")


def stimulus_docs(atlas: Atlas | str | Path) -> pd.DataFrame:
    """The atlas's docs (stimuli): ``doc, source, source_offset, n_tokens``, sorted by ``doc``."""
    a = open_atlas(atlas)
    return a.query("select * from docs order by doc")


def _check_stimuli(stimuli: Any) -> np.ndarray:
    ids = np.asarray(stimuli)
    if ids.ndim != 1 or len(ids) == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(
            "stimuli must be a non-empty 1-D sequence of integer doc ids; got "
            f"{type(stimuli).__name__} with shape {ids.shape} and dtype {ids.dtype}."
        )
    uniq = np.unique(ids)
    if len(uniq) != len(ids):
        raise DataError(
            f"stimuli must not repeat a doc id; {len(ids) - len(uniq)} repeats among {len(ids)}."
        )
    return ids.astype(np.int64)


def stimulus_features(
    atlas: Atlas | str | Path,
    site: str,
    *,
    pool: Pool = "mean",
    stimuli: Any = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """One feature vector per stimulus (doc): the pooled activations of ``site``.

    Args:
        atlas: an atlas built with ``keep_activations`` (or its path).
        site: a site of the atlas.
        pool: how a doc's token rows become one vector: ``"mean"`` (average over its stored
            rows, accumulated in float64), ``"max"`` (per unit), ``"first"`` / ``"last"``
            (the row at its smallest / largest stored position: ``[CLS]`` or the last token).
        stimuli: doc ids, in the order wanted; ``None`` = every doc of the atlas, by doc id.
        device: where the result lives (``None`` = CPU).

    Returns:
        ``(stimulus, unit)`` float32 tensor; row ``i`` is ``stimuli[i]`` (or the ``i``-th doc).

    Raises:
        AtlasError: no activation store. SiteError: unknown site (the message lists the sites).
        DataError: bad ``pool``/``stimuli``, a doc id the atlas lacks, a doc without stored rows,
            or a non-finite value in the stored activations of a wanted doc.

    Examples:
        >>> X = stimulus_features("atlas", "encoder.layer.3", pool="mean")  # doctest: +SKIP
        >>> X.shape  # doctest: +SKIP
        torch.Size([259, 384])
    """
    if pool not in POOLS:
        raise DataError(f"pool must be one of {list(POOLS)}; got {pool!r}.")
    a = open_atlas(atlas)
    store = a.store()
    if site not in store.sites:
        raise SiteError(
            f"The activation store of {str(a.path)!r} has no site {site!r}. Stored sites: "
            f"{list(store.sites)}; closest: {closest(site, store.sites)}."
        )
    all_docs = stimulus_docs(a)["doc"].to_numpy(np.int64)
    if stimuli is None:
        wanted = all_docs
    else:
        wanted = _check_stimuli(stimuli)
        unknown = np.setdiff1d(wanted, all_docs)
        if len(unknown):
            raise DataError(
                f"stimuli name {len(unknown)} doc ids the atlas does not have (first: "
                f"{unknown[:5].tolist()}); its docs are {all_docs.min()}…{all_docs.max()}."
            )
    order = np.argsort(wanted, kind="stable")
    sorted_ids = wanted[order]
    n, d = len(wanted), store.sites[site]

    # numpy accumulators: small scattered updates are cheaper there than in torch
    acc = np.zeros((n, d), dtype=np.float64) if pool == "mean" else None
    out = np.full((n, d), -np.inf, dtype=np.float32) if pool == "max" else None
    if pool in ("first", "last"):
        out = np.zeros((n, d), dtype=np.float32)
    best = np.full(n, np.iinfo(np.int64).max if pool == "first" else -1, dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    bad = 0
    for rows, values in store.iter_chunks(site):
        idx = store.index(rows)
        doc = idx.column("doc").to_numpy()
        slot = np.searchsorted(sorted_ids, doc)
        slot = np.minimum(slot, n - 1)
        keep = sorted_ids[slot] == doc
        if not keep.any():
            continue
        where = order[slot[keep]]  # output row of each kept token row
        vals = np.ascontiguousarray(values[keep], dtype=np.float32)
        bad += int(vals.size - np.count_nonzero(np.isfinite(vals)))
        counts += np.bincount(where, minlength=n)
        if pool in ("mean", "max"):
            # rows of one doc are mostly consecutive: reduce each run, then scatter the runs
            starts = np.flatnonzero(np.r_[True, where[1:] != where[:-1]])
            run_doc = where[starts]
            if pool == "mean":
                np.add.at(acc, run_doc, np.add.reduceat(vals.astype(np.float64), starts, axis=0))
            else:
                np.maximum.at(out, run_doc, np.maximum.reduceat(vals, starts, axis=0))
        else:
            pos = idx.column("pos").to_numpy()[keep].astype(np.int64)
            sign = 1 if pool == "first" else -1
            # the extreme position of each doc within this chunk, then compare to the best so far
            srt = np.lexsort((sign * pos, where))
            first_of = np.unique(where[srt], return_index=True)[1]
            rows_sel = srt[first_of]
            docs_sel, pos_sel = where[rows_sel], pos[rows_sel]
            better = sign * pos_sel < sign * best[docs_sel]
            best[docs_sel[better]] = pos_sel[better]
            out[docs_sel[better]] = vals[rows_sel[better]]
    if bad:
        raise DataError(
            f"Site {site!r} holds {bad} non-finite stored activations (NaN/Inf) in the wanted "
            "docs; features of them would be meaningless. Choose another site or stimuli without "
            "them (see the atlas's `nonfinite` counts)."
        )
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        raise DataError(
            f"{len(empty)} of {n} stimuli have no stored activations in {str(a.path)!r} (doc ids "
            f"{wanted[empty[:5]].tolist()}…): the store was subsampled or truncated. Pass "
            "`stimuli=` with the docs that have rows."
        )
    if pool == "mean":
        out = (acc / counts[:, None]).astype(np.float32)
    t = torch.from_numpy(out)
    return t.to(device) if device is not None else t
