"""The accumulator interface: what every per-unit statistic implements.

Glossary of dimensions (used in every docstring of the package):
``batch`` rows of a model batch, ``pos`` sequence positions, ``unit`` units of one site,
``n`` valid (non-padding) activations of a batch, flattened.

An accumulator sees each activation exactly once, in any order and split into any number of
batches, possibly in different processes; ``a.merge(b)`` must equal one pass over both halves.
This is what lets one mapping run be sharded across processes, GPUs and nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from neuronatlas.errors import AccumulatorError


@dataclass
class SiteBatch:
    """One batch of one site's activations, with the bookkeeping that traces each one.

    Attributes:
        values: ``(batch, pos, unit)`` activations, on the model's device, any float dtype.
            2-D activations ``(batch, unit)`` are passed as ``(batch, 1, unit)``.
        mask: ``(batch, pos)`` bool, True where the activation is a real token (not padding,
            and kept by subsampling). Only masked-in activations may reach any statistic.
        doc: ``(batch, pos)`` int64 document id of each position (meaningless where masked out).
        pos: ``(batch, pos)`` int64 position of each token within its document.

    The flattened views (``flat``, ``flat_doc``, ``flat_pos``) are computed once per batch and
    shared by all accumulators of the site.
    """

    values: Tensor
    mask: Tensor
    doc: Tensor
    pos: Tensor
    _cache: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.values.dim() != 3:
            raise AccumulatorError(
                f"SiteBatch.values must be (batch, pos, unit); got shape {tuple(self.values.shape)}."
            )
        if tuple(self.mask.shape) != tuple(self.values.shape[:2]):
            raise AccumulatorError(
                f"SiteBatch.mask must be (batch, pos) = {tuple(self.values.shape[:2])}; "
                f"got {tuple(self.mask.shape)}."
            )

    @property
    def n_units(self) -> int:
        return int(self.values.shape[-1])

    @property
    def all_valid(self) -> bool:
        """True when no position is masked out (lets accumulators skip the gather)."""
        if "all_valid" not in self._cache:
            self._cache["all_valid"] = torch.tensor(bool(self.mask.all()))
        return bool(self._cache["all_valid"])

    @property
    def flat(self) -> Tensor:
        """``(n, unit)`` the valid activations, in row-major (batch, pos) order."""
        if "flat" not in self._cache:
            v = self.values.reshape(-1, self.n_units)
            self._cache["flat"] = v if self.all_valid else v[self.mask.reshape(-1)]
        return self._cache["flat"]

    @property
    def flat_doc(self) -> Tensor:
        """``(n,)`` document id of each row of :attr:`flat`."""
        if "flat_doc" not in self._cache:
            self._cache["flat_doc"] = self.doc.reshape(-1)[self.mask.reshape(-1)]
        return self._cache["flat_doc"]

    @property
    def flat_pos(self) -> Tensor:
        """``(n,)`` position of each row of :attr:`flat`."""
        if "flat_pos" not in self._cache:
            self._cache["flat_pos"] = self.pos.reshape(-1)[self.mask.reshape(-1)]
        return self._cache["flat_pos"]


@runtime_checkable
class Accumulator(Protocol):
    """A mergeable per-unit statistic of one site.

    Implementations keep their state as tensors on the device they were created on, update in
    the recording path without synchronizing with the host where they can, and follow:

    - ``update(batch)`` folds one :class:`SiteBatch` in;
    - ``merge(other)`` folds another accumulator of the same kind and settings in, in place,
      and returns ``self``; ``a.merge(b)`` equals one pass over the union of their data;
    - ``state_dict()`` returns plain tensors / numbers / strings (``torch.save``-able, and
      loadable with ``weights_only=True``); ``from_state_dict`` rebuilds an equal accumulator;
    - ``result()`` returns per-unit numpy columns, each of length ``n_units``, named as the
      columns of ``units.parquet`` (see docs/architecture.md).
    """

    n_units: int

    def update(self, batch: SiteBatch) -> None: ...

    def merge(self, other: Any) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Any: ...

    def result(self) -> dict[str, np.ndarray]: ...
