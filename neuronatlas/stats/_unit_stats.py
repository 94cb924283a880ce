"""All the statistics of one site in one object: the accumulators, run together on a batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats._activity import Activity
from neuronatlas.stats._base import SiteBatch
from neuronatlas.stats._common import (
    check_batch,
    check_int,
    check_n_units,
    check_other,
    check_setting,
    check_state,
    header,
    resolve_device,
)
from neuronatlas.stats._extremes import Extremes
from neuronatlas.stats._moments import Moments
from neuronatlas.stats._nonfinite import NonFinite
from neuronatlas.stats._quantiles import QuantileSketch
from neuronatlas.stats._topk import TopK

__all__ = ["COLUMNS", "UnitStats"]

#: Column order of :meth:`UnitStats.result` (those of accumulators turned off are left out).
COLUMNS = (
    "count",
    "mean",
    "std",
    "var",
    "skew",
    "kurtosis",
    "min",
    "max",
    "frac_active",
    "frac_above",
    "p50",
    "p90",
    "p99",
    "p999",
    "hist_edges",
    "hist_counts",
    "n_nan",
    "n_posinf",
    "n_neginf",
)


class UnitStats:
    """The per-unit statistics of one site: moments, extremes, activity, quantiles, top-k.

    One object per site owns the chosen accumulators and feeds each batch to all of them; they
    share the batch's flattened valid activations and its per-unit reductions
    (:class:`SiteBatch`), and non-finite values are detected once per batch (one reduction)
    and counted (``n_nan, n_posinf, n_neginf``), then kept out of every other statistic.

    ``UnitStats.cheap(n_units)`` keeps only the inexpensive set (count, mean, var, std, min,
    max, frac_active, frac_above, top-k and the non-finite counts).

    Args:
        n_units: units of the site.
        top_k: exemplars per unit (0 turns the exemplars off).
        context: activations kept on each side of an exemplar.
        threshold: the cut of ``frac_above``.
        moments: count, mean, var, std.
        higher_moments: also skew and kurtosis (needs ``moments``).
        extremes: min, max.
        activity: frac_active, frac_above.
        quantiles: p50, p90, p99, p999 and the histogram (the costliest: a sort per batch).
        sketch_k: accuracy of the quantile sketch (see :class:`QuantileSketch`).
        hist_bins: histogram bins.
        seed: seed of the quantile sketch's coins.
        device: where the state lives (the model's device). When not given, the state starts
            on CPU (or where :meth:`from_state_dict` put it) and moves, once, to the device of
            the batches it is fed; when given, a batch elsewhere is an error.

    Examples:
        >>> import torch
        >>> from neuronatlas.stats import SiteBatch, UnitStats
        >>> stats = UnitStats(3, top_k=2, context=1)
        >>> stats.update(SiteBatch.from_values(torch.randn(4, 8, 3)))
        >>> res = stats.result()
        >>> res["count"].tolist(), sorted(res)[:4]
        ([32, 32, 32], ['count', 'frac_above', 'frac_active', 'hist_counts'])
        >>> stats.exemplars()["ctx_acts"].shape
        (6, 3)
    """

    def __init__(
        self,
        n_units: int,
        *,
        top_k: int = 20,
        context: int = 10,
        threshold: float = 0.0,
        moments: bool = True,
        higher_moments: bool = True,
        extremes: bool = True,
        activity: bool = True,
        quantiles: bool = True,
        sketch_k: int = 1024,
        hist_bins: int = 32,
        seed: int = 0,
        device: torch.device | str | None = None,
    ):
        self.n_units = check_n_units(n_units, "UnitStats")
        top_k = check_int(top_k, "top_k", "UnitStats", low=0)
        context = check_int(context, "context", "UnitStats", low=0)
        sketch_k = check_int(sketch_k, "sketch_k", "UnitStats", low=8)
        hist_bins = check_int(hist_bins, "hist_bins", "UnitStats", low=1)
        seed = check_int(seed, "seed", "UnitStats", low=0)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
            raise AccumulatorError(
                f"The 'threshold' parameter of UnitStats must be a finite number; got {threshold!r}."
            )
        self.settings: dict[str, Any] = {
            "top_k": top_k,
            "context": context,
            "threshold": float(threshold),
            "moments": bool(moments),
            "higher_moments": bool(moments and higher_moments),
            "extremes": bool(extremes),
            "activity": bool(activity),
            "quantiles": bool(quantiles),
            "sketch_k": sketch_k,
            "hist_bins": hist_bins,
            "seed": seed,
        }
        dev = resolve_device(device)
        self._device_given = device is not None
        s = self.settings
        acc: dict[str, Any] = {"nonfinite": NonFinite(self.n_units, device=dev)}
        if s["moments"]:
            acc["moments"] = Moments(
                self.n_units, order=4 if s["higher_moments"] else 2, device=dev
            )
        if s["extremes"]:
            acc["extremes"] = Extremes(self.n_units, device=dev)
        if top_k:
            acc["topk"] = TopK(self.n_units, k=top_k, context=context, device=dev)
        if s["activity"]:
            acc["activity"] = Activity(self.n_units, threshold=threshold, device=dev)
        if s["quantiles"]:
            acc["quantiles"] = QuantileSketch(
                self.n_units, k=sketch_k, bins=hist_bins, seed=seed, device=dev
            )
        self.accumulators = acc

    @classmethod
    def cheap(cls, n_units: int, **kwargs: Any) -> UnitStats:
        """Only the inexpensive statistics: no quantiles/histogram, no skew/kurtosis."""
        kwargs.setdefault("quantiles", False)
        kwargs.setdefault("higher_moments", False)
        return cls(n_units, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.accumulators["nonfinite"].device

    # the accumulators (None when turned off)
    @property
    def nonfinite(self) -> NonFinite:
        return self.accumulators["nonfinite"]

    @property
    def moments(self) -> Moments | None:
        return self.accumulators.get("moments")

    @property
    def extremes(self) -> Extremes | None:
        return self.accumulators.get("extremes")

    @property
    def activity(self) -> Activity | None:
        return self.accumulators.get("activity")

    @property
    def quantiles(self) -> QuantileSketch | None:
        return self.accumulators.get("quantiles")

    @property
    def topk(self) -> TopK | None:
        return self.accumulators.get("topk")

    def __repr__(self) -> str:
        on = ", ".join(self.accumulators)
        return f"UnitStats(n_units={self.n_units}, [{on}], device={self.device})"

    # --- update / merge ---

    def update(self, batch: SiteBatch) -> None:
        """Fold one batch of this site in (all accumulators)."""
        check_batch(batch, self.n_units, "UnitStats")
        dev = batch.values.device
        if dev != self.device:
            if self._device_given:
                check_batch(batch, self.n_units, "UnitStats", self.device)
            self.to(dev)  # no device was asked for: follow the data (once)
        if batch.n and batch.has_nonfinite:
            batch.finite  # noqa: B018 - build the shared mask once, before the accumulators
        for acc in self.accumulators.values():
            acc.update(batch)

    def merge(self, other: UnitStats) -> UnitStats:
        """Fold the statistics of another shard of the same site in; returns ``self``.

        Raises:
            AccumulatorError: when the other has another number of units or other settings
                (the quantile ``seed`` may differ).
        """
        check_other(self, other)
        for key, mine in self.settings.items():
            if key != "seed":
                check_setting("UnitStats", key, mine, other.settings[key])
        for name, acc in self.accumulators.items():
            acc.merge(other.accumulators[name])
        return self

    def to(self, device: torch.device | str) -> UnitStats:
        """Move all state to ``device`` (in place); returns ``self``."""
        for acc in self.accumulators.values():
            acc.to(device)
        return self

    # --- state ---

    def state_dict(self) -> dict[str, Any]:
        """Plain CPU tensors and numbers; ``torch.load(..., weights_only=True)`` reads it."""
        return {
            **header("UnitStats", self.n_units, settings=dict(self.settings)),
            "accumulators": {name: acc.state_dict() for name, acc in self.accumulators.items()},
        }

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], *, device: torch.device | str | None = None
    ) -> UnitStats:
        """Rebuild the statistics saved by :meth:`state_dict`, on ``device`` (default CPU)."""
        check_state(state, "UnitStats")
        self = cls(state["n_units"], **state["settings"], device=device)
        saved = state["accumulators"]
        if set(saved) != set(self.accumulators):
            raise AccumulatorError(
                f"UnitStats state is inconsistent: its settings imply accumulators "
                f"{sorted(self.accumulators)} but it holds {sorted(saved)}."
            )
        for name, acc in self.accumulators.items():
            self.accumulators[name] = type(acc).from_state_dict(saved[name], device=device)
        self._device_given = device is not None
        return self

    # --- results ---

    def result(self) -> dict[str, np.ndarray]:
        """Per-unit columns in :data:`COLUMNS` order, named as in ``units.parquet``.

        Scalars are ``(unit,)`` arrays; ``hist_edges`` is ``(unit, bins + 1)`` and
        ``hist_counts`` ``(unit, bins)``. Units that saw no finite value have ``count = 0``
        and NaN statistics. Columns of accumulators that are turned off are absent.
        """
        cols: dict[str, np.ndarray] = {}
        for acc in self.accumulators.values():
            cols.update(acc.result())
        if "count" not in cols:
            cols["count"] = self.accumulators["nonfinite"].finite_count()
        return {name: cols[name] for name in COLUMNS if name in cols}

    def exemplars(self) -> dict[str, np.ndarray]:
        """The top-k exemplars as columns (see :meth:`TopK.exemplars`); empty when off."""
        topk = self.accumulators.get("topk")
        if topk is not None:
            return topk.exemplars()
        width = 2 * self.settings["context"] + 1
        return {
            "unit": np.zeros(0, np.int32),
            "rank": np.zeros(0, np.int32),
            "activation": np.zeros(0, np.float32),
            "doc": np.zeros(0, np.int64),
            "pos": np.zeros(0, np.int32),
            "ctx_start": np.zeros(0, np.int32),
            "ctx_acts": np.zeros((0, width), np.float32),
        }
