"""Count, mean, variance, skewness and kurtosis per unit, mergeable in float64.

A batch's moments are computed in the batch's own precision (:attr:`SiteBatch.work_dtype`,
float32 for float32/bfloat16/float16 activations, float64 for float64) from values shifted by
the batch mean, and only the ``(unit,)`` results are promoted to float64 and merged into the
running state with the pairwise formulas of

- T. F. Chan, G. H. Golub, R. J. LeVeque, "Updating formulae and a pairwise algorithm for
  computing sample variances" (1979), for the mean and ``M2``, and
- P. Pébay, "Formulas for robust, one-pass parallel computation of covariances and
  arbitrary-order statistical moments" (Sandia report SAND2008-6212, 2008), for ``M3``, ``M4``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats._base import SiteBatch
from neuronatlas.stats._common import (
    block_rows,
    check_batch,
    check_n_units,
    check_other,
    check_setting,
    check_state,
    cpu,
    header,
    nan_where,
    resolve_device,
    row_blocks,
)

__all__ = ["Moments", "batch_moments", "merge_moments"]

# (count, mean, M2, M3, M4), each ``(unit,)`` float64; M3/M4 are None for order 2.
MomentSums = tuple[Tensor, Tensor, Tensor, "Tensor | None", "Tensor | None"]


def batch_moments(
    x: Tensor,
    finite: Tensor | None = None,
    *,
    order: int = 4,
    colsum: Tensor | None = None,
) -> MomentSums:
    """Count, mean and central moment sums of one batch, per unit.

    With ``d = x - K`` for a per-unit shift ``K`` (the batch mean rounded to the working
    precision), the power sums ``P_p = sum(d**p)`` are taken in the working precision and the
    central sums follow exactly in float64 with ``delta = P_1 / n``::

        mean = K + delta
        M2 = P2 - n delta^2
        M3 = P3 - 3 delta P2 + 2 n delta^3
        M4 = P4 - 4 delta P3 + 6 delta^2 P2 - 3 n delta^4

    Because ``K`` is within rounding of the mean, ``delta`` is tiny and nothing cancels; the
    only rounding is in the power sums, taken in the working precision over blocks of rows
    (256 on CPU, where it keeps the temporaries in cache; the whole batch on GPUs) and
    accumulated in float64: relative error about ``log2(block) * eps`` of ``sum(|d|**p)``.

    Args:
        x: ``(n, unit)`` activations, any float dtype (the work runs in at least float32).
        finite: optional ``(n, unit)`` bool; only True entries are counted (the slow path for
            batches with NaN/inf). ``None`` means every entry is finite.
        order: 2 (count, mean, M2) or 4 (also M3, M4).
        colsum: optional precomputed ``x.sum(0)`` in the working precision (shared with the
            non-finite check of :class:`SiteBatch`); ignored when ``finite`` is given.

    Returns:
        ``(count, mean, M2, M3, M4)``, each ``(unit,)`` float64; ``M3``/``M4`` are None for
        ``order=2``. Units without values have count 0 and zeros elsewhere.

    Examples:
        >>> import torch
        >>> n, mean, m2, m3, m4 = batch_moments(torch.tensor([[1.0], [2.0], [3.0], [6.0]]))
        >>> n.tolist(), mean.tolist(), m2.tolist(), m3.tolist()
        ([4.0], [3.0], [14.0], [18.0])
    """
    wd = torch.promote_types(x.dtype, torch.float32)
    n_rows = x.shape[0]
    if finite is None:
        s1 = x.sum(0, dtype=wd) if colsum is None else colsum.to(wd)
        n = torch.full(s1.shape, float(n_rows), dtype=torch.float64, device=x.device)
    else:
        n = finite.sum(0).double()
        s1 = torch.where(finite, x, 0).sum(0, dtype=wd)
    shift = (s1.double() / n.clamp(min=1)).to(wd)
    # Row blocks keep the temporaries in cache on CPU (several times faster than whole-batch
    # passes); on GPUs one block is best. Block sums are accumulated in float64.
    step = block_rows(x)
    p = torch.zeros(order, x.shape[1], dtype=torch.float64, device=x.device)
    for start in row_blocks(x):
        d = x[start : start + step] - shift
        if finite is not None:
            d = torch.where(finite[start : start + step], d, 0)
        d2 = d * d
        p[0] += d.sum(0)
        p[1] += d2.sum(0)
        if order == 4:
            p[2] += (d2 * d).sum(0)
            p[3] += (d2 * d2).sum(0)
    delta = p[0] / n.clamp(min=1)
    mean = shift.double() + delta
    m2 = (p[1] - n * delta**2).clamp(min=0)
    if order == 2:
        return n, mean, m2, None, None
    m3 = p[2] - 3 * delta * p[1] + 2 * n * delta**3
    m4 = (p[3] - 4 * delta * p[2] + 6 * delta**2 * p[1] - 3 * n * delta**4).clamp(min=0)
    return n, mean, m2, m3, m4


def merge_moments(a: MomentSums, b: MomentSums) -> MomentSums:
    """Combine the moment sums of two disjoint sets of values (Chan et al. 1979; Pébay 2008).

    With ``n = na + nb`` and ``delta = mean_b - mean_a``::

        mean = mean_a + delta nb / n
        M2 = M2a + M2b + delta^2 na nb / n
        M3 = M3a + M3b + delta^3 na nb (na - nb) / n^2 + 3 delta (na M2b - nb M2a) / n
        M4 = M4a + M4b + delta^4 na nb (na^2 - na nb + nb^2) / n^3
             + 6 delta^2 (na^2 M2b + nb^2 M2a) / n^2 + 4 delta (na M3b - nb M3a) / n

    Args:
        a: ``(count, mean, M2, M3, M4)`` float64 tensors (M3/M4 may be None: order 2).
        b: the same for the other set.

    Returns:
        The moment sums of the union. Units empty on both sides stay ``(0, 0, 0, 0, 0)``.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0], [2.0], [3.0], [6.0]], dtype=torch.float64)
        >>> m = merge_moments(batch_moments(x[:1]), batch_moments(x[1:]))
        >>> [round(t.item(), 9) for t in m]
        [4.0, 3.0, 14.0, 18.0, 98.0]
    """
    na, mean_a, m2a, m3a, m4a = a
    nb, mean_b, m2b, m3b, m4b = b
    n = na + nb
    inv = 1.0 / n.clamp(min=1)
    delta = mean_b - mean_a
    nab = na * nb
    mean = mean_a + delta * nb * inv
    m2 = m2a + m2b + delta**2 * nab * inv
    if m3a is None or m3b is None or m4a is None or m4b is None:
        return n, mean, m2, None, None
    m3 = m3a + m3b + delta**3 * nab * (na - nb) * inv**2 + 3 * delta * (na * m2b - nb * m2a) * inv
    m4 = (
        m4a
        + m4b
        + delta**4 * nab * (na * na - nab + nb * nb) * inv**3
        + 6 * delta**2 * (na * na * m2b + nb * nb * m2a) * inv**2
        + 4 * delta * (na * m3b - nb * m3a) * inv
    )
    return n, mean, m2, m3, m4


class Moments:
    """Running count, mean, variance, skewness and excess kurtosis per unit.

    State (float64, on ``device``): ``count_`` and the mean and central moment sums ``m2_``,
    ``m3_``, ``m4_`` (``M_p = sum((x - mean)**p)``). Non-finite values are left out.

    Definitions (population, as ``numpy.var`` / ``scipy.stats.skew(bias=True)`` /
    ``scipy.stats.kurtosis(bias=True)``)::

        var = M2 / n        std = sqrt(var)
        skew = sqrt(n) M3 / M2^(3/2)        kurtosis = n M4 / M2^2 - 3   (0 for a Gaussian)

    Accuracy: each batch's sums are taken in the batch's precision around its own mean, so for
    float32 activations ``mean`` and ``var`` carry a relative error of order ``1e-6`` (float32
    rounding of the batch sums), independent of how many batches are merged; merging itself is
    float64. For float64 activations everything is float64 (relative error ~1e-12).

    Units that saw no finite value give ``count = 0`` and NaN for every other column; a
    constant unit (``M2 = 0``) gives ``var = std = 0`` and NaN ``skew`` / ``kurtosis``.

    Args:
        n_units: units of the site.
        order: 4 (default) for skew and kurtosis, 2 for only count, mean, var, std (cheaper).
        device: where the state lives (the model's device); default CPU.

    Examples:
        >>> import torch
        >>> from neuronatlas.stats import Moments, SiteBatch
        >>> m = Moments(2)
        >>> m.update(SiteBatch.from_values(torch.tensor([[1.0, 0.0], [3.0, 0.0]])))
        >>> m.result()["mean"].tolist(), m.result()["var"].tolist()
        ([2.0, 0.0], [1.0, 0.0])
    """

    def __init__(self, n_units: int, *, order: int = 4, device: torch.device | str | None = None):
        self.n_units = check_n_units(n_units, "Moments")
        if order not in (2, 4):
            raise AccumulatorError(f"Moments(order=...) must be 2 or 4; got {order!r}.")
        self.order = order
        dev = resolve_device(device)
        z = torch.zeros(self.n_units, dtype=torch.float64, device=dev)
        self.count_ = torch.zeros(self.n_units, dtype=torch.int64, device=dev)
        self.mean_ = z.clone()
        self.m2_ = z.clone()
        self.m3_ = z.clone() if order == 4 else None
        self.m4_ = z.clone() if order == 4 else None

    @property
    def device(self) -> torch.device:
        return self.mean_.device

    def _sums(self) -> MomentSums:
        return (self.count_.double(), self.mean_, self.m2_, self.m3_, self.m4_)

    def _set(self, sums: MomentSums) -> None:
        n, self.mean_, self.m2_, m3, m4 = sums
        self.count_ = n.round().to(torch.int64)
        if self.order == 4:
            self.m3_, self.m4_ = m3, m4

    def update(self, batch: SiteBatch) -> None:
        """Fold one batch in (the finite, valid values of each unit)."""
        check_batch(batch, self.n_units, "Moments", self.device)
        if batch.n == 0:
            return
        if batch.has_nonfinite:
            b = batch_moments(batch.flat, batch.finite, order=self.order)
        else:
            b = batch_moments(batch.flat, order=self.order, colsum=batch.colsum)
        self._set(merge_moments(self._sums(), b))

    def merge(self, other: Moments) -> Moments:
        """Fold another :class:`Moments` of the same site in; returns ``self``."""
        check_other(self, other)
        check_setting("Moments", "order", self.order, other.order)
        theirs = tuple(None if t is None else t.to(self.device) for t in other._sums())
        self._set(merge_moments(self._sums(), theirs))  # type: ignore[arg-type]
        return self

    def to(self, device: torch.device | str) -> Moments:
        """Move the state to ``device`` (in place); returns ``self``."""
        for name in ("count_", "mean_", "m2_", "m3_", "m4_"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        return self

    def state_dict(self) -> dict[str, Any]:
        state = header("Moments", self.n_units, order=self.order)
        state.update(count=cpu(self.count_), mean=cpu(self.mean_), m2=cpu(self.m2_))
        if self.order == 4:
            state.update(m3=cpu(self.m3_), m4=cpu(self.m4_))
        return state

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], *, device: torch.device | str | None = None
    ) -> Moments:
        check_state(state, "Moments")
        self = cls(state["n_units"], order=state["order"], device=device)
        dev = self.device
        self.count_ = state["count"].to(dev, torch.int64)
        self.mean_ = state["mean"].to(dev, torch.float64)
        self.m2_ = state["m2"].to(dev, torch.float64)
        if self.order == 4:
            self.m3_ = state["m3"].to(dev, torch.float64)
            self.m4_ = state["m4"].to(dev, torch.float64)
        return self

    def result(self) -> dict[str, np.ndarray]:
        """``count`` (int64) and ``mean, std, var`` (+ ``skew, kurtosis`` for order 4), float64."""
        count = self.count_.cpu()
        n = count.double()
        empty = count == 0
        m2 = self.m2_.cpu()
        var = m2 / n.clamp(min=1)
        out = {
            "count": count.numpy().astype(np.int64),
            "mean": nan_where(self.mean_, empty),
            "std": nan_where(var.sqrt(), empty),
            "var": nan_where(var, empty),
        }
        if self.order == 4:
            flat = empty | (m2 <= 0)
            safe = torch.where(flat, 1.0, m2)
            out["skew"] = nan_where(n.sqrt() * self.m3_.cpu() / safe**1.5, flat)
            out["kurtosis"] = nan_where(n * self.m4_.cpu() / safe**2 - 3.0, flat)
        return out
