"""Shuffled minibatches from an activation store in bounded memory.

Reading a store for training (an SAE, a probe) needs batches of rows in random order, but the
store may be far larger than RAM and only reads efficiently chunk by chunk. The reader visits
the chunks in a random order and mixes rows through a shuffle buffer of a few chunks:

1. each epoch draws a permutation of the row chunks (shards take every ``world``-th chunk of it);
2. each chunk read is appended to a buffer of ``buffer_rows = buffer_chunks * chunk_rows`` rows;
3. when the next chunk might not fit, enough rows to make room (a multiple of ``batch_size``)
   are drawn uniformly without replacement from the buffer, yielded in the order drawn, and
   the rows left behind are compacted (cost per chunk: O(chunk), not O(buffer));
4. at the end of the epoch the rest of the buffer is yielded in random order.

Every row is yielded exactly once per epoch (only the final partial batch is dropped with
``drop_last``); a row can stay in the buffer across many chunk reads, so a batch mixes rows from
many more chunks than the buffer holds. Memory is the buffer plus about four chunks (the chunk
being read ahead, as file bytes and decoded, the one being added, zarr's temporaries) plus a batch, whatever
the store's size. The same ``seed`` gives the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuronatlas.errors import StoreError
from neuronatlas.store._format import decode_torch
from neuronatlas.store._validate import selection

if TYPE_CHECKING:
    from neuronatlas.store._store import ActivationStore


def minibatches(
    store: ActivationStore,
    site: str,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epochs: int = 1,
    units: Any = None,
    buffer_chunks: int = 4,
    drop_last: bool = False,
    shard: tuple[int, int] | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> Iterator[torch.Tensor]:
    """Yield ``(batch, unit)`` tensors of one site's rows, chunk by chunk, in bounded memory.

    Args:
        store: an :class:`~neuronatlas.store.ActivationStore` (committed rows are read).
        site: the site to read.
        batch_size: rows per batch.
        shuffle: random order through a shuffle buffer (see the module docs); ``False`` yields
            the rows in store order.
        seed: the same seed (and store) gives the same batches.
        epochs: passes over the rows; each epoch draws a new order.
        units: a slice or indices of units to read (default all).
        buffer_chunks: shuffle buffer size in chunks (memory ~ ``buffer_chunks + 4`` chunks).
            Larger buffers mix better; rows from ``buffer_chunks`` chunks at least meet.
        drop_last: drop each epoch's final partial batch.
        shard: ``(rank, world)``: read only every ``world``-th chunk of each epoch's chunk order,
            starting at ``rank``; the shards of one epoch cover every row exactly once.
        dtype: convert batches to this dtype (default: the store dtype, bfloat16 as
            ``torch.bfloat16``).
        device: move batches there (default CPU).

    Yields:
        ``(batch, unit)`` tensors; the last batch of an epoch may be smaller.

    Examples:
        >>> import tempfile, torch
        >>> from neuronatlas.store import ActivationStore
        >>> s = ActivationStore.create(tempfile.mkdtemp() + "/s", sites={"a": 2}, chunk_rows=4)
        >>> _ = s.append({"a": torch.arange(20.0).reshape(10, 2)}, doc=range(10), pos=[0] * 10)
        >>> s.close()
        >>> batches = list(s.minibatches("a", batch_size=4, seed=1))
        >>> [len(b) for b in batches]
        [4, 4, 2]
        >>> sorted(torch.cat(batches)[:, 0].tolist()) == list(range(0, 20, 2))
        True
    """
    info = store._site(site)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise StoreError(f"batch_size must be a positive int; got {batch_size!r}.")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise StoreError(f"epochs must be a non-negative int; got {epochs!r}.")
    if not isinstance(buffer_chunks, int) or buffer_chunks < 1:
        raise StoreError(f"buffer_chunks must be a positive int; got {buffer_chunks!r}.")
    rank, world = _check_shard(shard)
    sel = selection(units, info.n_units, "units")
    chunk_rows = store.chunk_rows
    n_chunks = store.n_chunks

    def read(i: int) -> np.ndarray:
        return store._read_stored(site, store.chunk_slice(i), sel)

    def emit(block: np.ndarray) -> Iterator[torch.Tensor]:
        """Batches of ``block``, which is a fresh array (batches may be views of it)."""
        for b in range(0, len(block), batch_size):
            part = block[b : b + batch_size]
            if drop_last and len(part) < batch_size:
                return
            t = decode_torch(part, info.dtype)
            if dtype is not None or device is not None:
                t = t.to(device=device, dtype=dtype)
            yield t

    return _generate(
        read,
        n_chunks,
        chunk_rows,
        batch_size,
        shuffle,
        seed,
        epochs,
        buffer_chunks,
        rank,
        world,
        emit,
    )


def _generate(
    read: Callable[[int], np.ndarray],
    n_chunks: int,
    chunk_rows: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epochs: int,
    buffer_chunks: int,
    rank: int,
    world: int,
    emit: Callable[[np.ndarray], Iterator[torch.Tensor]],
) -> Iterator[torch.Tensor]:
    buffer_rows = max(buffer_chunks * chunk_rows, chunk_rows + batch_size)
    for epoch in range(epochs):
        order = np.arange(n_chunks)
        if shuffle:
            order = np.random.default_rng([seed, epoch]).permutation(n_chunks)
        order = order[rank::world]
        rng = np.random.default_rng([seed, epoch, rank, 1])
        chunks = _prefetch(read, order.tolist())
        if shuffle:
            yield from _shuffled_epoch(chunks, chunk_rows, batch_size, buffer_rows, rng, emit)
        else:
            yield from _ordered_epoch(chunks, batch_size, emit)


def _shuffled_epoch(
    chunks: Iterator[list[np.ndarray]],
    chunk_rows: int,
    batch_size: int,
    buffer_rows: int,
    rng: np.random.Generator,
    emit: Callable[[np.ndarray], Iterator[torch.Tensor]],
) -> Iterator[torch.Tensor]:
    buf: np.ndarray | None = None
    n = 0
    room = buffer_rows - chunk_rows  # rows the buffer may keep so that any next chunk fits
    for box in chunks:
        chunk = box.pop()
        if buf is None:
            buf = np.empty((buffer_rows, *chunk.shape[1:]), chunk.dtype)
        buf[n : n + len(chunk)] = chunk
        n += len(chunk)
        del chunk
        if n <= room:
            continue
        take = min(-(-(n - room) // batch_size) * batch_size, n)
        picked = rng.choice(n, size=take, replace=False)  # uniform, without replacement, shuffled
        for b in range(0, take, batch_size):
            yield from emit(buf[picked[b : b + batch_size]])  # fancy indexing copies
        # move the rows of buf[keep:n] that were not picked into the holes of buf[:keep]
        keep = n - take
        holes = picked[picked < keep]
        tail_picked = np.zeros(take, dtype=bool)
        tail_picked[picked[picked >= keep] - keep] = True
        movers = keep + np.flatnonzero(~tail_picked)
        for b in range(0, len(holes), batch_size):  # in slices: bounded temporaries
            buf[holes[b : b + batch_size]] = buf[movers[b : b + batch_size]]
        n = keep
    if buf is not None and n:
        order = rng.permutation(n)
        for b in range(0, n, batch_size):
            yield from emit(buf[order[b : b + batch_size]])


def _ordered_epoch(
    chunks: Iterator[list[np.ndarray]],
    batch_size: int,
    emit: Callable[[np.ndarray], Iterator[torch.Tensor]],
) -> Iterator[torch.Tensor]:
    rest: np.ndarray | None = None
    for box in chunks:
        chunk = box.pop()
        block = chunk if rest is None or not len(rest) else np.concatenate([rest, chunk])
        del chunk
        full = len(block) // batch_size * batch_size
        rest = block[full:].copy()
        head, block = block[:full], None
        yield from emit(head)
        del head
    if rest is not None and len(rest):
        yield from emit(rest)


def _prefetch(read: Callable[[int], np.ndarray], items: list[int]) -> Iterator[list[np.ndarray]]:
    """Yield ``[read(i)]`` for each item, reading the next one in a thread meanwhile.

    Each value comes in a one-element list that the consumer empties, so this generator holds
    no reference to a chunk while it waits.
    """
    if not items:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="neuronatlas-store-read") as ex:
        fut = ex.submit(read, items[0])
        for k in range(len(items)):
            box = [fut.result()]
            fut = ex.submit(read, items[k + 1]) if k + 1 < len(items) else None  # type: ignore[assignment]
            yield box
            del box


def _check_shard(shard: Any) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    try:
        rank, world = (int(x) for x in shard)
    except (TypeError, ValueError):
        rank, world = -1, 0
    if world < 1 or not 0 <= rank < world:
        raise StoreError(
            f"shard must be (rank, world) with 0 <= rank < world; got {shard!r}. "
            "For 4 data-parallel workers use shard=(rank, 4)."
        )
    return rank, world
