"""Small helpers shared by the accumulators: validation, state headers, device moves."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats._base import SiteBatch

STATE_VERSION = 1


CPU_BLOCK_ROWS = 256  # 256 rows x 1536 float32 units = 1.5 MB: fits in cache


def row_blocks(x: Tensor) -> range:
    """Start rows of the blocks that per-batch passes over ``x`` ``(n, unit)`` walk.

    On CPU, blocks of :data:`CPU_BLOCK_ROWS` rows keep the temporaries of each pass in cache
    (several times faster than whole-batch passes); on GPUs the whole batch is one block.
    Pair with :func:`block_rows` for the block size.
    """
    return range(0, x.shape[0], block_rows(x))


def block_rows(x: Tensor) -> int:
    """Rows per block for :func:`row_blocks`."""
    return CPU_BLOCK_ROWS if x.device.type == "cpu" else max(int(x.shape[0]), 1)


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``None`` means CPU; strings are parsed (``"cuda"``, ``"cuda:1"``, ``"cpu"``)."""
    return torch.device("cpu") if device is None else torch.device(device)


def check_n_units(n_units: Any, kind: str) -> int:
    if isinstance(n_units, bool) or not isinstance(n_units, (int, np.integer)) or n_units < 1:
        raise AccumulatorError(
            f"{kind}(n_units=...) must be a positive int (the units of one site); got {n_units!r}."
        )
    return int(n_units)


def check_int(value: Any, name: str, kind: str, *, low: int, high: int | None = None) -> int:
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer))
    if ok and value >= low and (high is None or value <= high):
        return int(value)
    span = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
    raise AccumulatorError(f"The {name!r} parameter of {kind} must be {span}; got {value!r}.")


def check_batch(
    batch: Any, n_units: int, kind: str, device: torch.device | None = None
) -> SiteBatch:
    """Raise a clear error unless ``batch`` is a :class:`SiteBatch` with ``n_units`` units
    (on ``device``, when given)."""
    if not isinstance(batch, SiteBatch):
        raise AccumulatorError(
            f"{kind}.update expects a SiteBatch; got {type(batch).__name__}. "
            "Wrap activations with SiteBatch.from_values(values, mask, doc, pos)."
        )
    if batch.n_units != n_units:
        raise AccumulatorError(
            f"{kind} was created for {n_units} units but the batch has {batch.n_units} "
            f"(values shape {tuple(batch.values.shape)}). Use one accumulator per site, "
            f"created with n_units={batch.n_units}."
        )
    if device is not None and batch.values.device != device:
        raise AccumulatorError(
            f"{kind} keeps its state on {device} but the batch is on {batch.values.device}. "
            f"Create it with device={str(batch.values.device)!r} or move it with .to(device)."
        )
    return batch


def check_other(self: Any, other: Any) -> None:
    """``other`` must be the same kind of accumulator with the same number of units."""
    kind = type(self).__name__
    if type(other) is not type(self):
        raise AccumulatorError(f"{kind}.merge expects another {kind}; got {type(other).__name__}.")
    if other.n_units != self.n_units:
        raise AccumulatorError(
            f"Cannot merge {kind} states of different sites: this one has {self.n_units} units, "
            f"the other {other.n_units}. Merge only states of the same site."
        )


def check_setting(kind: str, name: str, mine: Any, theirs: Any) -> None:
    if mine != theirs:
        raise AccumulatorError(
            f"Cannot merge {kind} states with different {name!r}: {mine!r} here, {theirs!r} in "
            f"the other. Create every shard's accumulator with the same settings."
        )


def header(kind: str, n_units: int, **settings: Any) -> dict[str, Any]:
    return {"kind": kind, "version": STATE_VERSION, "n_units": n_units, **settings}


def check_state(state: Any, kind: str) -> None:
    """Validate the header written by :func:`header`."""
    if not isinstance(state, dict) or "kind" not in state:
        raise AccumulatorError(
            f"Expected a {kind} state dict (from {kind}.state_dict()); got "
            f"{type(state).__name__} without a 'kind' entry."
        )
    if state["kind"] != kind:
        raise AccumulatorError(
            f"This state dict holds a {state['kind']!r}, not a {kind!r}; load it with "
            f"{state['kind']}.from_state_dict."
        )
    if state.get("version") != STATE_VERSION:
        raise AccumulatorError(
            f"{kind} state version {state.get('version')!r} is not supported (this neuronatlas "
            f"reads version {STATE_VERSION}). Recompute the statistics with this version."
        )


def cpu(t: Tensor) -> Tensor:
    """A CPU copy of ``t`` for a state dict (loadable on machines without the model's device)."""
    return t.detach().to("cpu", copy=True)


def nan_where(values: Tensor, empty: Tensor) -> np.ndarray:
    """``values`` as float64 numpy, NaN where ``empty`` is True."""
    v = values.detach().to("cpu", torch.float64)
    return torch.where(empty.to("cpu"), torch.nan, v).numpy()
