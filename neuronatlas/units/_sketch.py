"""Bounded, exactly mergeable summaries the taxonomy is built from.

- :func:`hash_buckets`: multiply-shift hashing of int64 keys into ``2**bits`` buckets
  (M. Dietzfelbinger et al., "A reliable randomized algorithm for the closest-pair problem",
  1997), the hash family of the count-min sketches below.
- count-min sketches (G. Cormode, S. Muthukrishnan, "An improved data stream summary: the
  count-min sketch and its applications", 2005): ``depth`` rows of ``width`` counters; a key's
  count is estimated by the minimum of its counters, which never underestimates and, with
  probability at least ``1 - exp(-depth)``, overestimates by at most ``e / width`` times the
  total mass. Sketches are linear, so merging (adding) is exact.
- :func:`abs_histogram` / :func:`histogram_median`: the magnitudes of float32 values binned by
  their top 11 bits (8 exponent bits + 3 mantissa bits), i.e. bins of relative width
  ``2**-3``; a median read from it is within 6.25% (relative) of a value of the median bin.
- :func:`best_rows`: the ``k`` largest rows of each column with ties broken by a row rank,
  which is what makes a streaming top-k independent of how the stream is batched.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = [
    "ABS_BINS",
    "abs_histogram",
    "best_rows",
    "bucket_sum",
    "hash_buckets",
    "hash_multipliers",
    "histogram_median",
]

#: Number of bins of :func:`abs_histogram` (the top 11 bits of a non-negative float32).
ABS_BINS = 2048
_FINITE_BINS = 255 << 3  # bins at and above this hold inf and NaN (exponent bits all ones)
_EMPTY = torch.iinfo(torch.int64).max


def bucket_sum(index: Tensor, src: Tensor, n_buckets: int) -> Tensor:
    """``(n_buckets, unit)`` sums of the rows of ``src`` ``(n, unit)`` by their bucket ``index``.

    For large inputs on CPU this is a sparse ``(n_buckets, n)`` CSR matrix times ``src``
    (several times faster than ``index_add_``, which adds one row at a time there); otherwise
    ``index_add_``.

    Examples:
        >>> bucket_sum(torch.tensor([1, 0, 1]), torch.tensor([[1.0], [2.0], [4.0]]), 3).tolist()
        [[2.0], [5.0], [0.0]]
    """
    n = index.numel()
    if src.device.type != "cpu" or n * src.shape[1] < 1 << 18:
        out = torch.zeros(n_buckets, src.shape[1], dtype=src.dtype, device=src.device)
        return out.index_add_(0, index, src)
    crow = torch.zeros(n_buckets + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(index, minlength=n_buckets).cumsum(0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta" (the product is stable)
        warnings.simplefilter("ignore", UserWarning)
        onehot = torch.sparse_csr_tensor(
            crow, torch.argsort(index), torch.ones(n, dtype=src.dtype), size=(n_buckets, n)
        )
        return onehot @ src


def hash_multipliers(depth: int, seed: int) -> Tensor:
    """``(depth,)`` odd int64 multipliers for :func:`hash_buckets`, reproducible from ``seed``.

    Examples:
        >>> a = hash_multipliers(2, seed=0)
        >>> a.dtype, bool((a % 2 == 1).all())
        (torch.int64, True)
    """
    g = torch.Generator().manual_seed(int(seed))
    hi = torch.randint(1, 2**31, (depth,), generator=g, dtype=torch.int64)
    lo = torch.randint(0, 2**31, (depth,), generator=g, dtype=torch.int64)
    return (hi << 32) | (lo << 1) | 1


def hash_buckets(keys: Tensor, multipliers: Tensor, bits: int) -> Tensor:
    """Bucket of each key in each sketch row: ``(a * key mod 2**64) >> (64 - bits)``.

    Args:
        keys: ``(n,)`` int64 keys.
        multipliers: ``(depth,)`` odd int64 multipliers (:func:`hash_multipliers`), on the
            device of ``keys``.
        bits: log2 of the number of buckets (1..62).

    Returns:
        ``(depth, n)`` int64 bucket indices in ``[0, 2**bits)``.

    Examples:
        >>> b = hash_buckets(torch.arange(1000), hash_multipliers(3, seed=1), bits=4)
        >>> tuple(b.shape), int(b.min()) >= 0, int(b.max()) < 16
        ((3, 1000), True, True)
    """
    prod = keys[None, :] * multipliers[:, None]  # wraps modulo 2**64 (two's complement)
    return (prod >> (64 - bits)) & ((1 << bits) - 1)


def abs_histogram(x: Tensor) -> Tensor:
    """``(ABS_BINS,)`` int64 counts of ``|x|`` binned by the top 11 bits of its float32 form.

    Bin ``b`` holds the magnitudes whose float32 bit pattern lies in ``[b << 20, (b+1) << 20)``:
    0 and subnormals in bin 0, then 8 bins per power of two. NaN and inf land in the bins from
    ``255 << 3`` on, which :func:`histogram_median` skips.

    Examples:
        >>> h = abs_histogram(torch.tensor([1.0, -1.0, 3.0]))
        >>> int(h.sum()), int(h[1016])  # 1.0 has bit pattern 0x3F800000 = 1016 << 20
        (3, 2)
    """
    bits = x.detach().reshape(-1).to(torch.float32).abs().view(torch.int32) >> 20
    return torch.bincount(bits, minlength=ABS_BINS).to(torch.int64)


def histogram_median(hist: Tensor) -> float:
    """The median magnitude of an :func:`abs_histogram`, NaN when it holds no finite value.

    Returns the midpoint of the bin that holds the lower median (rank ``ceil(n / 2)``), so the
    result is within 6.25% (relative) of a magnitude in that bin; 0.0 when the median is 0 (or
    subnormal).

    Examples:
        >>> histogram_median(abs_histogram(torch.tensor([0.5, 1.0, 2.0, 3.0, 100.0])))
        2.125
    """
    counts = hist[:_FINITE_BINS].to("cpu", torch.int64)
    total = int(counts.sum())
    if total == 0:
        return float("nan")
    b = int(torch.searchsorted(counts.cumsum(0), (total + 1) // 2))
    if b == 0:
        return 0.0
    edges = torch.tensor([b << 20, (b + 1) << 20], dtype=torch.int32).view(torch.float32)
    return float(edges.double().mean())


def best_rows(sub: Tensor, k: int, rank: Tensor) -> tuple[Tensor, Tensor]:
    """The ``min(k, n)`` largest rows of each column, exactly, ties broken by smaller ``rank``.

    Args:
        sub: ``(n, m)`` values (``-inf`` for rows to ignore, which sort last).
        k: rows wanted per column.
        rank: ``(n,)`` int64, a strict order of the rows (the ``(doc, pos)`` order of a batch):
            among equal values the smaller rank wins, so the selection does not depend on how
            rows were split into batches.

    Returns:
        ``(value, row)``, each ``(min(k, n), m)``, best first within equal values by rank.

    Examples:
        >>> v, r = best_rows(torch.tensor([[1.0], [2.0], [2.0]]), 2, torch.tensor([0, 2, 1]))
        >>> v[:, 0].tolist(), r[:, 0].tolist()
        ([2.0, 2.0], [2, 1])
    """
    n = sub.shape[0]
    if n <= k:
        by_rank = torch.argsort(rank)
        value, idx = torch.sort(sub[by_rank], dim=0, descending=True, stable=True)
        return value, by_rank[idx]
    value, row = torch.topk(sub, k + 1, dim=0)
    edge = value[k - 1]
    tie = torch.nonzero((edge == value[k]) & torch.isfinite(edge)).reshape(-1)
    value, row = value[:k], row[:k]
    if (
        tie.numel()
    ):  # the k-th value also occurs below the cut: give its slots to the smallest ranks
        cut = edge[tie]
        n_above = (value[:, tie] > cut).sum(0)
        key = torch.where(sub[:, tie] == cut, rank[:, None], _EMPTY)
        first = torch.topk(key, k, dim=0, largest=False).indices
        slot = torch.arange(k, device=sub.device)[:, None]
        src = first.gather(0, (slot - n_above).clamp(min=0))
        row[:, tie] = torch.where(slot >= n_above, src, row[:, tie])
    # order equal values by rank inside the selection too
    order = torch.argsort(rank[row], dim=0, stable=True)
    value, row = value.gather(0, order), row.gather(0, order)
    by_value = torch.argsort(value, dim=0, descending=True, stable=True)
    return value.gather(0, by_value), row.gather(0, by_value)
