"""Minimum and maximum per unit."""

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
    nan_where,
    resolve_device,
)

__all__ = ["Extremes"]


class Extremes:
    """Exact running minimum and maximum of each unit's finite values.

    State: ``min_`` and ``max_``, ``(unit,)`` float64, starting at ``+inf`` / ``-inf``; the
    batch extremes (:attr:`SiteBatch.minmax`) are shared with the top-k gate. Units that saw no
    finite value give NaN.

    Args:
        n_units: units of the site.
        device: where the state lives; default CPU.

    Examples:
        >>> import torch
        >>> from neuronatlas.stats import Extremes, SiteBatch
        >>> e = Extremes(1)
        >>> e.update(SiteBatch.from_values(torch.tensor([[2.0], [-1.0], [float("nan")]])))
        >>> e.result()["min"].tolist(), e.result()["max"].tolist()
        ([-1.0], [2.0])
    """

    def __init__(self, n_units: int, *, device: torch.device | str | None = None):
        self.n_units = check_n_units(n_units, "Extremes")
        dev = resolve_device(device)
        self.min_ = torch.full((self.n_units,), float("inf"), dtype=torch.float64, device=dev)
        self.max_ = torch.full((self.n_units,), float("-inf"), dtype=torch.float64, device=dev)

    @property
    def device(self) -> torch.device:
        return self.min_.device

    def update(self, batch: SiteBatch) -> None:
        check_batch(batch, self.n_units, "Extremes", self.device)
        if batch.n == 0:
            return
        lo, hi = batch.minmax
        torch.minimum(self.min_, lo.double(), out=self.min_)
        torch.maximum(self.max_, hi.double(), out=self.max_)

    def merge(self, other: Extremes) -> Extremes:
        check_other(self, other)
        torch.minimum(self.min_, other.min_.to(self.device), out=self.min_)
        torch.maximum(self.max_, other.max_.to(self.device), out=self.max_)
        return self

    def to(self, device: torch.device | str) -> Extremes:
        self.min_, self.max_ = self.min_.to(device), self.max_.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {**header("Extremes", self.n_units), "min": cpu(self.min_), "max": cpu(self.max_)}

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], *, device: torch.device | str | None = None
    ) -> Extremes:
        check_state(state, "Extremes")
        self = cls(state["n_units"], device=device)
        self.min_ = state["min"].to(self.device, torch.float64)
        self.max_ = state["max"].to(self.device, torch.float64)
        return self

    def result(self) -> dict[str, np.ndarray]:
        """``min``, ``max`` (float64, NaN for units without finite values)."""
        empty = self.min_ > self.max_
        return {"min": nan_where(self.min_, empty), "max": nan_where(self.max_, empty)}
