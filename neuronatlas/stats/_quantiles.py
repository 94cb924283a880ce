"""Quantiles and histograms per unit from a mergeable KLL sketch run in lockstep over units.

The sketch is the one of Z. Karnin, K. Lang, E. Liberty, "Optimal Quantile Approximation in
Streams" (FOCS 2016), in the lazy form used by Apache DataSketches: level ``h`` holds items of
weight ``2**h``; when the sketch exceeds its capacity, the lowest level at or over its own
capacity is *compacted*: sorted, and every other item (odd or even positions, a fair coin)
promoted to level ``h + 1`` with twice the weight. Capacities shrink geometrically below the top
level: ``cap_h = max(2, floor(k * (2/3) ** (H - 1 - h)))`` for ``H`` levels.

All units of a site receive the same number of values per batch, so every unit's sketch has the
same level sizes at all times and the whole site runs as one ``(unit, size)`` float32 tensor per
level: a compaction is one row-wise sort and one strided slice for all units at once. Which
levels to compact depends only on the level sizes (:func:`compaction_plan`), never on the data.
Non-finite values take part as sentinels (NaN and +inf sort as +inf, -inf as -inf) whose exact
per-unit counts are kept, and queries skip them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats._base import SiteBatch
from neuronatlas.stats._common import (
    check_batch,
    check_int,
    check_n_units,
    check_other,
    check_setting,
    check_state,
    cpu,
    header,
    resolve_device,
)

__all__ = [
    "QUANTILES",
    "QuantileSketch",
    "compaction_plan",
    "level_capacities",
]

#: The quantiles reported as columns, and their column names.
QUANTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999}

_DECAY = 2.0 / 3.0
_MASK64 = (1 << 64) - 1


def level_capacities(n_levels: int, k: int) -> list[int]:
    """Capacity of each level of a sketch with ``n_levels`` levels and top capacity ``k``."""
    return [max(2, int(k * _DECAY ** (n_levels - 1 - h))) for h in range(n_levels)]


def compaction_plan(sizes: Sequence[int], k: int) -> list[int]:
    """The levels to compact, in order, for a sketch with these level sizes.

    While the total size exceeds the total capacity, the lowest level at or over its capacity is
    compacted: its even-sized part (all but the largest item if the size is odd) is halved into
    the level above, adding a level when the top one is compacted.

    Args:
        sizes: number of items at each level (the same for every unit).
        k: the top level's capacity.

    Returns:
        The level index of each compaction, in the order they run.

    Examples:
        >>> compaction_plan([20], k=4)
        [0, 1]
    """
    sizes = list(sizes)
    plan: list[int] = []
    while True:
        caps = level_capacities(len(sizes), k)
        if sum(sizes) <= sum(caps):
            return plan
        h = next(h for h, (s, c) in enumerate(zip(sizes, caps, strict=True)) if s >= c)
        m = sizes[h] - sizes[h] % 2
        sizes[h] -= m
        if h + 1 == len(sizes):
            sizes.append(0)
        sizes[h + 1] += m // 2
        plan.append(h)


def _mix64(x: int) -> int:
    """SplitMix64 finalizer (S. Vigna): a well-mixed 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _sort_rows_(x: Tensor) -> Tensor:
    """Sort each row ascending (values only), in place where possible; returns the result.

    On CPU numpy's SIMD sort (x86-simd-sort) is about 10x faster than ``torch.sort``.
    """
    if x.device.type == "cpu":
        x = x.contiguous()
        x.numpy().sort(axis=1)
        return x
    return torch.sort(x, dim=1).values


class QuantileSketch:
    """Approximate quantiles and a histogram of each unit's finite values (KLL sketch).

    **Guarantee.** For one unit with ``n`` finite values and empirical CDF ``F_n``, the rank
    error of an estimate ``y`` of the ``q``-quantile is ``max(0, F_n(y-) - q, q - F_n(y))``:
    the distance from ``q`` to the range of ranks ``y`` occupies, so ties (an exact 0 shared by
    half of a ReLU unit's values) are not errors. Each compaction at level ``h`` changes the
    estimated rank of any fixed point by ``0`` or ``±2**h`` with equal probability, so by the
    Azuma-Hoeffding inequality, with ``V = sum over compactions of 4**h`` (the same for every
    unit; :attr:`var_`), for every ``q``::

        P(rank error > eps) <= 2 exp(-(eps n)^2 / (2 V))

    :meth:`rank_error_bound` returns the ``eps`` of this bound for a given probability. Which
    levels are compacted depends only on the batch sizes, and with the default ``k=1024``
    ``sqrt(V) <= 0.001 N`` for streams of any length (``N`` values per unit; checked for
    batches of 1 to 32768 values up to ``N = 10**8``; the ratio peaks at the first compaction
    and settles near ``0.0008``). Hence, per unit and quantile, when all values are finite:
    the rank error is at most 1% except with probability ``2 exp(-50) < 1e-21``, at most
    0.54% except with probability ``1e-6``, and typically below 0.1%.
    NaN/inf values count in ``N`` but not in ``n``, which widens the bound by ``N / n``.
    Streams of at most ``k`` values are kept whole and are exact. Items are stored as float32,
    so for float64 activations the estimates are float32-rounded values (then clamped to the
    exact float64 min and max).

    **Cost.** Per batch of ``n`` values per unit: one transposed copy and one row-wise sort of
    ``(unit, n)`` (plus the sort of the compacted levels, together about as much again);
    memory about ``3 k`` float32 items per unit (12 KB at ``k=1024``).

    **Randomness.** The coin of each compaction is a hash of ``seed``, the first document id
    the sketch saw, and a counter, so runs are reproducible and shards that start at different
    documents draw independent coins (which the bound assumes when their states are merged).

    Args:
        n_units: units of the site.
        k: capacity of the top level (accuracy/memory trade-off, see above).
        bins: number of histogram bins between each unit's min and max.
        seed: seed of the compaction coins.
        device: where the state lives; default CPU.

    Examples:
        >>> import torch
        >>> from neuronatlas.stats import QuantileSketch, SiteBatch
        >>> qs = QuantileSketch(1, k=64)
        >>> for i in range(10):
        ...     qs.update(SiteBatch.from_values(torch.arange(100.0)[:, None] + 100 * i))
        >>> round(float(qs.quantile(0.5)[0]) / 1000, 1)
        0.5
        >>> bool(qs.rank_error_bound(1e-6)[0] < 0.1)
        True
    """

    def __init__(
        self,
        n_units: int,
        *,
        k: int = 1024,
        bins: int = 32,
        seed: int = 0,
        device: torch.device | str | None = None,
    ):
        self.n_units = check_n_units(n_units, "QuantileSketch")
        self.k = check_int(k, "k", "QuantileSketch", low=8)
        self.bins = check_int(bins, "bins", "QuantileSketch", low=1)
        self.seed = check_int(seed, "seed", "QuantileSketch", low=0)
        dev = resolve_device(device)
        self.levels_: list[Tensor] = [torch.empty(self.n_units, 0, device=dev)]
        self.n_ = 0
        self.var_ = 0.0
        self.low_ = torch.zeros(self.n_units, dtype=torch.int64, device=dev)
        self.high_ = torch.zeros_like(self.low_)
        self.min_ = torch.full((self.n_units,), float("inf"), dtype=torch.float64, device=dev)
        self.max_ = torch.full((self.n_units,), float("-inf"), dtype=torch.float64, device=dev)
        self._stream: int | None = None
        self._counter = 0

    @property
    def device(self) -> torch.device:
        return self.low_.device

    @property
    def sizes(self) -> list[int]:
        """Number of items at each level (the same for every unit)."""
        return [int(t.shape[1]) for t in self.levels_]

    # --- update / merge ---

    def update(self, batch: SiteBatch) -> None:
        check_batch(batch, self.n_units, "QuantileSketch", self.device)
        n = batch.n
        if n == 0:
            return
        if self._stream is None:
            first_doc = int(batch.flat_doc[0])
            self._stream = _mix64(_mix64(self.seed) ^ (first_doc & _MASK64)) >> 1
        x = batch.flat
        items = torch.empty(self.n_units, n, dtype=torch.float32, device=x.device)
        items.copy_(x.T)
        if batch.has_nonfinite:
            items.masked_fill_(torch.isnan(items), float("inf"))
            neg = torch.isneginf(x).sum(0)
            self.low_ += neg
            self.high_ += n - batch.n_finite - neg
        lo, hi = batch.minmax
        torch.minimum(self.min_, lo.double(), out=self.min_)
        torch.maximum(self.max_, hi.double(), out=self.max_)
        self.levels_[0] = (
            items if self.levels_[0].shape[1] == 0 else torch.cat([self.levels_[0], items], dim=1)
        )
        self.n_ += n
        self._compress()

    def _coin(self) -> int:
        self._counter += 1
        return _mix64((self._stream or 0) ^ _mix64(self._counter)) & 1

    def _compress(self) -> None:
        for h in compaction_plan(self.sizes, self.k):
            x = _sort_rows_(self.levels_[h])  # levels own their memory: sorting in place is safe
            m = x.shape[1] - x.shape[1] % 2
            kept = x[:, self._coin() : m : 2]
            self.levels_[h] = x[:, m:].clone()
            if h + 1 == len(self.levels_):
                self.levels_.append(kept.clone())
            else:
                self.levels_[h + 1] = torch.cat([self.levels_[h + 1], kept], dim=1)
            self.var_ += 4.0**h

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """Fold another sketch of the same site and settings in; returns ``self``."""
        check_other(self, other)
        check_setting("QuantileSketch", "k", self.k, other.k)
        check_setting("QuantileSketch", "bins", self.bins, other.bins)
        dev = self.device
        for h, t in enumerate(other.levels_):
            t = t.to(dev)
            if h == len(self.levels_):
                self.levels_.append(t.clone())
            else:
                self.levels_[h] = torch.cat([self.levels_[h], t], dim=1)
        self.n_ += other.n_
        self.var_ += other.var_
        self.low_ += other.low_.to(dev)
        self.high_ += other.high_.to(dev)
        torch.minimum(self.min_, other.min_.to(dev), out=self.min_)
        torch.maximum(self.max_, other.max_.to(dev), out=self.max_)
        if self._stream is None:
            self._stream, self._counter = other._stream, other._counter
        self._compress()
        return self

    def to(self, device: torch.device | str) -> QuantileSketch:
        self.levels_ = [t.to(device) for t in self.levels_]
        for name in ("low_", "high_", "min_", "max_"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    # --- queries ---

    def finite_count(self) -> Tensor:
        """``(unit,)`` int64 number of finite values seen."""
        return self.n_ - self.low_ - self.high_

    def _cdf(self) -> tuple[Tensor, Tensor]:
        """Sorted items ``(unit, M)`` and, padded with a leading 0, their cumulative weights."""
        items = torch.cat(self.levels_, dim=1)
        weights = torch.cat(
            [
                torch.full((t.shape[1],), 2**h, dtype=torch.float64, device=self.device)
                for h, t in enumerate(self.levels_)
            ]
        )
        vals, perm = torch.sort(items, dim=1)
        cum = torch.cumsum(weights[perm], dim=1)
        return vals.double(), torch.cat([torch.zeros_like(cum[:, :1]), cum], dim=1)

    def quantile(self, q: float | Sequence[float]) -> np.ndarray:
        """Estimated ``q``-quantiles of each unit's finite values.

        The estimate is the smallest stored value whose estimated rank reaches ``q * n`` (the
        inverted-CDF definition), clamped to the exact finite ``[min, max]``.

        Args:
            q: a probability in [0, 1], or a sequence of them.

        Returns:
            ``(unit,)`` float64 for a scalar ``q``, else ``(unit, len(q))``; NaN for units
            without finite values.
        """
        scalar = np.ndim(q) == 0
        qs = torch.as_tensor(np.asarray(q, dtype=np.float64).reshape(-1))
        if qs.numel() == 0 or bool(((qs < 0) | (qs > 1) | qs.isnan()).any()):
            raise AccumulatorError(f"Quantiles must be probabilities in [0, 1]; got {q!r}.")
        qs = qs.to(self.device)
        n_f = self.finite_count().double()
        if self.n_ == 0:
            out = torch.full((self.n_units, qs.numel()), float("nan"), dtype=torch.float64)
        else:
            vals, cum = self._cdf()
            target = self.low_.double()[:, None] + qs[None, :] * n_f[:, None]
            idx = torch.searchsorted(cum[:, 1:].contiguous(), target, side="left")
            est = vals.gather(1, idx.clamp(max=vals.shape[1] - 1))
            est = torch.maximum(torch.minimum(est, self.max_[:, None]), self.min_[:, None])
            out = torch.where((n_f == 0)[:, None], torch.nan, est).cpu()
        return out[:, 0].numpy() if scalar else out.numpy()

    def histogram(self, bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Histogram of each unit's finite values over ``bins`` equal bins from min to max.

        Bins are ``[e_i, e_i+1)``, the last one closed. Counts come from the sketch's estimated
        CDF at the edges, scaled so they sum exactly to the unit's finite count; each count is
        within the rank error bound (times ``n``) of the exact one.

        Returns:
            ``edges`` ``(unit, bins + 1)`` float64 (NaN for units without finite values) and
            ``counts`` ``(unit, bins)`` int64. A constant unit has all its count in the last
            bin.
        """
        bins = self.bins if bins is None else check_int(bins, "bins", "histogram", low=1)
        n_f = self.finite_count().double()
        empty = n_f == 0
        lo = torch.where(empty, 0.0, self.min_)
        hi = torch.where(empty, 0.0, self.max_)
        frac = torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64, device=self.device)
        edges = lo[:, None] + (hi - lo)[:, None] * frac[None, :]
        edges[:, -1] = hi
        if self.n_ == 0:
            counts = torch.zeros(self.n_units, bins, dtype=torch.int64)
        else:
            vals, cum = self._cdf()
            below = cum.gather(1, torch.searchsorted(vals, edges[:, :-1].contiguous(), side="left"))
            upto = cum.gather(1, torch.searchsorted(vals, hi[:, None].contiguous(), side="right"))
            base = below[:, :1]
            total = upto - base
            cdf = torch.cat([below - base, total], dim=1)
            ok = total > 0
            scaled = torch.where(ok, cdf * n_f[:, None] / torch.where(ok, total, 1.0), 0.0)
            scaled[:, -1] = n_f  # also when the sketch kept no finite item of a unit
            counts = torch.diff(scaled.round(), dim=1).to(torch.int64).cpu()
        edges = torch.where(empty[:, None], torch.nan, edges).cpu()
        return edges.numpy(), counts.numpy()

    def rank_error_bound(self, delta: float = 1e-6) -> np.ndarray:
        """``(unit,)`` rank error ``eps`` exceeded with probability at most ``delta``.

        ``eps = sqrt(2 V ln(2 / delta)) / n`` (see the class docstring); 0 while the sketch is
        exact, NaN for units without finite values.
        """
        if not 0 < delta < 1:
            raise AccumulatorError(f"delta must be a probability in (0, 1); got {delta!r}.")
        n_f = self.finite_count().double().cpu()
        eps = math.sqrt(2 * self.var_ * math.log(2 / delta)) / n_f.clamp(min=1)
        return torch.where(n_f == 0, torch.nan, eps).numpy()

    # --- state ---

    def state_dict(self) -> dict[str, Any]:
        return {
            **header("QuantileSketch", self.n_units, k=self.k, bins=self.bins, seed=self.seed),
            "levels": [cpu(t) for t in self.levels_],
            "n": int(self.n_),
            "var": float(self.var_),
            "low": cpu(self.low_),
            "high": cpu(self.high_),
            "min": cpu(self.min_),
            "max": cpu(self.max_),
            "stream": -1 if self._stream is None else int(self._stream),
            "counter": int(self._counter),
        }

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], *, device: torch.device | str | None = None
    ) -> QuantileSketch:
        check_state(state, "QuantileSketch")
        self = cls(
            state["n_units"], k=state["k"], bins=state["bins"], seed=state["seed"], device=device
        )
        dev = self.device
        self.levels_ = [t.to(dev, torch.float32).clone() for t in state["levels"]]
        if [t.shape[0] for t in self.levels_] != [self.n_units] * len(self.levels_):
            raise AccumulatorError(
                f"QuantileSketch state is inconsistent: its levels do not all have "
                f"{self.n_units} rows. The state is corrupted; recompute it."
            )
        self.n_ = int(state["n"])
        self.var_ = float(state["var"])
        self.low_ = state["low"].to(dev, torch.int64)
        self.high_ = state["high"].to(dev, torch.int64)
        self.min_ = state["min"].to(dev, torch.float64)
        self.max_ = state["max"].to(dev, torch.float64)
        self._stream = None if state["stream"] < 0 else int(state["stream"])
        self._counter = int(state["counter"])
        return self

    def result(self) -> dict[str, np.ndarray]:
        """``p50, p90, p99, p999`` (float64) and ``hist_edges`` ``(unit, bins + 1)``,
        ``hist_counts`` ``(unit, bins)``."""
        qv = self.quantile(list(QUANTILES.values()))
        out = {name: qv[:, i] for i, name in enumerate(QUANTILES)}
        out["hist_edges"], out["hist_counts"] = self.histogram()
        return out
