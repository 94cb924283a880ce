"""The accumulator interface: what every per-unit statistic implements.

Glossary of dimensions (used in every docstring of the package):
``batch`` rows of a model batch, ``pos`` sequence positions, ``unit`` units of one site,
``n`` valid (non-padding) activations of a batch, flattened.

An accumulator sees each activation exactly once, in any order and split into any number of
batches, possibly in different processes; ``a.merge(b)`` must equal one pass over both halves.
This is what lets one mapping run be sharded across processes, GPUs and nodes.

Non-finite activations (NaN, ±inf) are counted by :class:`~neuronatlas.stats.NonFinite` and kept
out of every other statistic. Detecting them costs one reduction per batch: a finite per-unit
sum of the batch (:attr:`SiteBatch.colsum`, which the moments reuse) proves every entry finite;
only when some sum is not finite do accumulators take their masked slow path. The check is
cached on the :class:`SiteBatch`, so all accumulators of a site share it.
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
            Integer masks (an ``attention_mask``) are accepted and read as ``mask != 0``.
        doc: ``(batch, pos)`` int64 document id of each position (meaningless where masked out).
        pos: ``(batch, pos)`` int64 position of each token within its document.
        token_id: ``(batch, pos)`` int64 token ids when the inputs are tokens, else None
            (for accumulators that relate activations to tokens, such as token detectors).

    ``mask``, ``doc`` and ``pos`` are moved to the device of ``values`` if they live elsewhere.
    The flattened views (``flat``, ``flat_doc``, ``flat_pos``) and the per-unit reductions
    (``colsum``, ``has_nonfinite``, ``minmax``) are computed once per batch and shared by all
    accumulators of the site.

    Examples:
        >>> import torch
        >>> b = SiteBatch.from_values(torch.tensor([[[1.0, -2.0], [3.0, 4.0]]]))
        >>> b.flat.shape, b.has_nonfinite
        (torch.Size([2, 2]), False)
    """

    values: Tensor
    mask: Tensor
    doc: Tensor
    pos: Tensor
    token_id: Tensor | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.values, Tensor) or self.values.dim() != 3:
            shape = (
                tuple(self.values.shape) if isinstance(self.values, Tensor) else type(self.values)
            )
            raise AccumulatorError(
                f"SiteBatch.values must be a (batch, pos, unit) tensor; got {shape}. "
                "Reshape 2-D (batch, unit) activations to (batch, 1, unit)."
            )
        if not self.values.is_floating_point():
            raise AccumulatorError(
                f"SiteBatch.values must be a floating-point tensor; got {self.values.dtype}. "
                "Convert the activations with .float() first."
            )
        lead = tuple(self.values.shape[:2])
        for name in ("mask", "doc", "pos"):
            t = getattr(self, name)
            if not isinstance(t, Tensor) or tuple(t.shape) != lead:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise AccumulatorError(
                    f"SiteBatch.{name} must be (batch, pos) = {lead} like values; got {got}."
                )
            if t.device != self.values.device:
                setattr(self, name, t.to(self.values.device, non_blocking=True))
        if self.mask.dtype != torch.bool:
            self.mask = self.mask != 0

    @classmethod
    def from_values(
        cls,
        values: Tensor,
        mask: Tensor | None = None,
        doc: Tensor | None = None,
        pos: Tensor | None = None,
        *,
        first_doc: int = 0,
    ) -> SiteBatch:
        """Build a batch with default bookkeeping: every position valid, one doc per row.

        Args:
            values: ``(batch, pos, unit)`` or ``(batch, unit)`` activations.
            mask: ``(batch, pos)``; default all True.
            doc: ``(batch, pos)``; default ``first_doc + row``.
            pos: ``(batch, pos)``; default the position index.
            first_doc: doc id of the first row when ``doc`` is not given.

        Returns:
            The :class:`SiteBatch`.
        """
        if isinstance(values, Tensor) and values.dim() == 2:
            values = values[:, None, :]
        if not isinstance(values, Tensor) or values.dim() != 3:
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise AccumulatorError(
                f"values must be (batch, pos, unit) or (batch, unit); got {shape}."
            )
        b, p = values.shape[:2]
        dev = values.device
        if mask is None:
            mask = torch.ones(b, p, dtype=torch.bool, device=dev)
        if doc is None:
            doc = (torch.arange(b, device=dev) + first_doc)[:, None].expand(b, p)
        if pos is None:
            pos = torch.arange(p, device=dev)[None, :].expand(b, p)
        return cls(values, mask, doc, pos)

    @property
    def n_units(self) -> int:
        return int(self.values.shape[-1])

    @property
    def all_valid(self) -> bool:
        """True when no position is masked out (lets accumulators skip the gather)."""
        if "all_valid" not in self._cache:
            self._cache["all_valid"] = bool(self.mask.all())
        return bool(self._cache["all_valid"])

    @property
    def flat(self) -> Tensor:
        """``(n, unit)`` the valid activations, in row-major (batch, pos) order."""
        if "flat" not in self._cache:
            v = self.values.reshape(-1, self.n_units)
            self._cache["flat"] = v if self.all_valid else v[self.mask.reshape(-1)]
        return self._cache["flat"]

    @property
    def n(self) -> int:
        """Number of valid positions (rows of :attr:`flat`)."""
        return int(self.flat.shape[0])

    @property
    def flat_index(self) -> Tensor:
        """``(n,)`` index of each row of :attr:`flat` into the flattened ``(batch * pos)`` grid."""
        if "flat_index" not in self._cache:
            m = self.mask.reshape(-1)
            self._cache["flat_index"] = (
                torch.arange(m.numel(), device=m.device)
                if self.all_valid
                else torch.nonzero(m).reshape(-1)
            )
        return self._cache["flat_index"]

    @property
    def flat_doc(self) -> Tensor:
        """``(n,)`` document id of each row of :attr:`flat`."""
        if "flat_doc" not in self._cache:
            self._cache["flat_doc"] = self.doc.reshape(-1)[self.flat_index]
        return self._cache["flat_doc"]

    @property
    def flat_pos(self) -> Tensor:
        """``(n,)`` position of each row of :attr:`flat`."""
        if "flat_pos" not in self._cache:
            self._cache["flat_pos"] = self.pos.reshape(-1)[self.flat_index]
        return self._cache["flat_pos"]

    # --- shared per-unit reductions (computed once per batch, reused by every accumulator) ---

    @property
    def work_dtype(self) -> torch.dtype:
        """The dtype batch arithmetic runs in: the values' dtype, at least float32."""
        return torch.promote_types(self.values.dtype, torch.float32)

    @property
    def colsum(self) -> Tensor:
        """``(unit,)`` sum of :attr:`flat` over ``n`` in :attr:`work_dtype` (non-finite included)."""
        if "colsum" not in self._cache:
            self._cache["colsum"] = self.flat.sum(0, dtype=self.work_dtype)
        return self._cache["colsum"]

    @property
    def has_nonfinite(self) -> bool:
        """True when the slow, masked path is needed: some valid value may be NaN or ±inf.

        A finite per-unit sum proves every entry of that unit finite; a non-finite sum means
        a NaN/inf entry or (rarely) an overflowing sum of huge finite values, which the masked
        path handles correctly too. One reduction (shared with the moments) and one host sync.
        """
        if "has_nonfinite" not in self._cache:
            self._cache["has_nonfinite"] = not bool(torch.isfinite(self.colsum).all())
        return bool(self._cache["has_nonfinite"])

    @property
    def finite(self) -> Tensor:
        """``(n, unit)`` bool, True where the value is finite (built only when needed)."""
        if "finite" not in self._cache:
            self._cache["finite"] = torch.isfinite(self.flat)
        return self._cache["finite"]

    @property
    def n_finite(self) -> Tensor:
        """``(unit,)`` int64 number of finite valid values per unit."""
        if "n_finite" not in self._cache:
            if self.has_nonfinite:
                self._cache["n_finite"] = self.finite.sum(0)
            else:
                self._cache["n_finite"] = torch.full(
                    (self.n_units,), self.n, dtype=torch.int64, device=self.values.device
                )
        return self._cache["n_finite"]

    @property
    def minmax(self) -> tuple[Tensor, Tensor]:
        """``(unit,)`` min and max over the finite valid values, in the values' dtype.

        Units without a finite value get ``(+inf, -inf)``.
        """
        if "minmax" not in self._cache:
            x = self.flat
            if x.shape[0] == 0:
                inf = torch.full((self.n_units,), float("inf"), dtype=x.dtype, device=x.device)
                self._cache["minmax"] = (inf, -inf)
            elif self.has_nonfinite:
                fin = self.finite
                lo = torch.where(fin, x, float("inf")).amin(0)
                hi = torch.where(fin, x, float("-inf")).amax(0)
                self._cache["minmax"] = (lo, hi)
            else:
                self._cache["minmax"] = (x.amin(0), x.amax(0))
        return self._cache["minmax"]


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
