"""Counts of NaN, +inf and -inf per unit: what every other statistic leaves out."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neuronatlas.stats._base import SiteBatch
from neuronatlas.stats._common import (
    check_batch,
    check_n_units,
    check_other,
    check_state,
    cpu,
    header,
    resolve_device,
)

__all__ = ["NonFinite"]


class NonFinite:
    """Number of NaN, +inf and -inf values per unit, and of values seen in all.

    A batch whose per-unit sums are all finite (:attr:`SiteBatch.has_nonfinite` is False, one
    shared reduction) costs nothing more; only other batches are scanned.

    State: ``n_seen_`` (valid values per unit, the same for every unit: an int) and
    ``nan_``, ``posinf_``, ``neginf_`` (``(unit,)`` int64).

    Args:
        n_units: units of the site.
        device: where the state lives; default CPU.

    Examples:
        >>> import torch
        >>> from neuronatlas.stats import NonFinite, SiteBatch
        >>> nf = NonFinite(1)
        >>> nf.update(SiteBatch.from_values(torch.tensor([[1.0], [float("nan")], [float("inf")]])))
        >>> {k: v.tolist() for k, v in nf.result().items()}
        {'n_nan': [1], 'n_posinf': [1], 'n_neginf': [0]}
        >>> nf.finite_count().tolist()
        [1]
    """

    def __init__(self, n_units: int, *, device: torch.device | str | None = None):
        self.n_units = check_n_units(n_units, "NonFinite")
        dev = resolve_device(device)
        self.n_seen_ = 0
        self.nan_ = torch.zeros(self.n_units, dtype=torch.int64, device=dev)
        self.posinf_ = torch.zeros_like(self.nan_)
        self.neginf_ = torch.zeros_like(self.nan_)

    @property
    def device(self) -> torch.device:
        return self.nan_.device

    def update(self, batch: SiteBatch) -> None:
        check_batch(batch, self.n_units, "NonFinite", self.device)
        self.n_seen_ += batch.n
        if batch.n == 0 or not batch.has_nonfinite:
            return
        x = batch.flat
        self.nan_ += torch.isnan(x).sum(0)
        self.posinf_ += torch.isposinf(x).sum(0)
        self.neginf_ += torch.isneginf(x).sum(0)

    def finite_count(self) -> np.ndarray:
        """``(unit,)`` int64 number of finite values seen (the ``count`` of the other stats)."""
        bad = (self.nan_ + self.posinf_ + self.neginf_).cpu().numpy()
        return (self.n_seen_ - bad).astype(np.int64)

    def merge(self, other: NonFinite) -> NonFinite:
        check_other(self, other)
        self.n_seen_ += other.n_seen_
        self.nan_ += other.nan_.to(self.device)
        self.posinf_ += other.posinf_.to(self.device)
        self.neginf_ += other.neginf_.to(self.device)
        return self

    def to(self, device: torch.device | str) -> NonFinite:
        self.nan_, self.posinf_, self.neginf_ = (
            t.to(device) for t in (self.nan_, self.posinf_, self.neginf_)
        )
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            **header("NonFinite", self.n_units),
            "n_seen": int(self.n_seen_),
            "nan": cpu(self.nan_),
            "posinf": cpu(self.posinf_),
            "neginf": cpu(self.neginf_),
        }

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], *, device: torch.device | str | None = None
    ) -> NonFinite:
        check_state(state, "NonFinite")
        self = cls(state["n_units"], device=device)
        self.n_seen_ = int(state["n_seen"])
        self.nan_, self.posinf_, self.neginf_ = (
            state[k].to(self.device, torch.int64) for k in ("nan", "posinf", "neginf")
        )
        return self

    def result(self) -> dict[str, np.ndarray]:
        """``n_nan``, ``n_posinf``, ``n_neginf`` (int64)."""
        return {
            "n_nan": self.nan_.cpu().numpy().astype(np.int64),
            "n_posinf": self.posinf_.cpu().numpy().astype(np.int64),
            "n_neginf": self.neginf_.cpu().numpy().astype(np.int64),
        }
