"""Where training and evaluation batches come from: an activation store, a tensor, an iterable.

Every source becomes an iterator of ``(batch, d_in)`` float tensors on the training device.
A store is read through :meth:`ActivationStore.minibatches` (shuffled chunk by chunk, never
whole in memory); a tensor is shuffled per epoch by a seeded permutation; any other iterable
of tensors is read as it comes (``(…, d_in)`` tensors are flattened to rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

from neuronatlas.sae._base import SAEError

__all__ = ["batches", "data_width", "n_rows"]


def _is_store(data: Any) -> bool:
    return type(data).__name__ == "ActivationStore" and hasattr(data, "minibatches")


def data_width(data: Any, site: str | None) -> int | None:
    """``d_in`` of a store site or a tensor (None for other iterables)."""
    if _is_store(data):
        return int(data.sites[_site(data, site)])
    if isinstance(data, Tensor):
        return int(data.shape[-1])
    return None


def n_rows(data: Any) -> int | None:
    """Rows of a store or tensor (None for other iterables)."""
    if _is_store(data):
        return int(data.n_rows)
    if isinstance(data, Tensor):
        return int(data.reshape(-1, data.shape[-1]).shape[0])
    return None


def _site(store: Any, site: str | None) -> str:
    if site is None:
        if len(store.sites) == 1:
            return next(iter(store.sites))
        raise SAEError(
            f"This activation store holds {len(store.sites)} sites; say which one to read "
            f"with site=... (one of {list(store.sites)})."
        )
    return site


def batches(
    data: Any,
    *,
    site: str | None = None,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    epochs: int | None = None,
    drop_last: bool = True,
    device: torch.device | None = None,
) -> Iterator[Tensor]:
    """Yield ``(batch, d_in)`` float32 tensors of ``data`` on ``device``.

    Args:
        data: an :class:`~neuronatlas.store.ActivationStore`, a ``(n, d_in)`` tensor, or an
            iterable of ``(…, d_in)`` tensors (read once, as given).
        site: the store site (needed when the store holds several).
        batch_size: rows per batch (stores and tensors).
        shuffle: random order (stores and tensors).
        seed: the same seed gives the same batches.
        epochs: passes over a store or tensor (None: without end).
        drop_last: drop a final partial batch of each epoch (stores and tensors).
        device: where batches go (default CPU).
    """
    if _is_store(data):
        name = _site(data, site)
        epoch = 0
        while epochs is None or epoch < epochs:
            yield from data.minibatches(
                name,
                batch_size,
                shuffle=shuffle,
                seed=seed + epoch,
                epochs=1,
                drop_last=drop_last,
                dtype=torch.float32,
                device=device,
            )
            epoch += 1
        return
    if isinstance(data, Tensor):
        flat = data.reshape(-1, data.shape[-1])
        if not flat.is_floating_point():
            raise SAEError(f"SAE inputs must be floating point; got a {flat.dtype} tensor.")
        n = flat.shape[0]
        if n < batch_size and drop_last:
            raise SAEError(
                f"The data has {n} rows, fewer than one batch of {batch_size}; lower "
                "batch_size or pass more rows."
            )
        epoch = 0
        while epochs is None or epoch < epochs:
            if shuffle:
                g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
                order = torch.randperm(n, generator=g)
            else:
                order = torch.arange(n)
            stop = n - n % batch_size if drop_last else n
            for b in range(0, stop, batch_size):
                yield flat[order[b : b + batch_size]].to(device=device, dtype=torch.float32)
            epoch += 1
        return
    if isinstance(data, Iterable):
        for item in data:
            t = torch.as_tensor(item)
            if not t.is_floating_point():
                raise SAEError(f"SAE inputs must be floating point; got a {t.dtype} batch.")
            yield t.reshape(-1, t.shape[-1]).to(device=device, dtype=torch.float32)
        return
    raise SAEError(
        "SAE data must be an ActivationStore, a (n, d_in) tensor or an iterable of tensors; "
        f"got {type(data).__name__}."
    )
