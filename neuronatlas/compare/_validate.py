"""Input checks shared by the similarity measures: what was expected, what came, what to do."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neuronatlas.errors import DataError

__all__ = ["CompareError", "as_matrix", "check_pair", "check_vectors"]


class CompareError(DataError):
    """Representations or RDMs that cannot be compared (shapes, stimuli, non-finite values)."""


def _n_nonfinite(t: torch.Tensor) -> int:
    """Non-finite entries of ``t`` (numpy on CPU: one pass, no thread synchronization)."""
    if t.device.type == "cpu":
        a = t.detach().numpy()
        return int(a.size - np.count_nonzero(np.isfinite(a)))
    return int((~torch.isfinite(t)).sum())


def as_matrix(x: Any, name: str = "X", *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``x`` as a finite 2-D ``(stimulus, unit)`` tensor of ``dtype`` (device kept)."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2:
        raise CompareError(
            f"{name} must be a 2-D (stimulus, unit) array; got shape {tuple(t.shape)}. Pool "
            "token rows into one vector per stimulus first (neuronatlas.compare.stimulus_features)."
        )
    if t.shape[0] < 3 or t.shape[1] < 1:
        raise CompareError(
            f"{name} needs at least 3 stimuli and 1 unit; got shape {tuple(t.shape)}."
        )
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.bool)):
        raise CompareError(f"{name} must hold numbers; got dtype {t.dtype}.")
    t = t.to(dtype)
    bad = _n_nonfinite(t)
    if bad:
        raise CompareError(
            f"{name} holds {bad} non-finite values (NaN/Inf) of {t.numel()}; similarity measures "
            "need finite values. Drop the units or stimuli that hold them."
        )
    return t


def check_pair(
    x: Any, y: Any, names: tuple[str, str] = ("X", "Y"), *, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two representations of the same stimuli: same number of rows, on ``x``'s device."""
    a, b = as_matrix(x, names[0], dtype=dtype), as_matrix(y, names[1], dtype=dtype)
    if a.shape[0] != b.shape[0]:
        raise CompareError(
            f"{names[0]} and {names[1]} must have one row per stimulus, the same stimuli in the "
            f"same order; got {a.shape[0]} and {b.shape[0]} rows."
        )
    return a, b.to(a.device)


def check_vectors(a: Any, b: Any | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Condensed RDM vectors (float64, finite, the same length; 2-D = one RDM per row)."""
    out = []
    for name, v in (("rdm1", a), ("rdm2", b)):
        if v is None:
            out.append(None)
            continue
        t = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
        t = t.to(torch.float64)
        if t.ndim not in (1, 2) or t.shape[-1] < 2:
            raise CompareError(
                f"{name} must be a condensed RDM vector (n·(n-1)/2 entries, upper triangle in "
                f"row-major order) or a 2-D stack of them; got shape {tuple(t.shape)}."
            )
        bad = _n_nonfinite(t)
        if bad:
            raise CompareError(f"{name} holds {bad} non-finite entries; RDMs must be finite.")
        out.append(t)
    if out[1] is not None and out[0].shape[-1] != out[1].shape[-1]:
        raise CompareError(
            "rdm1 and rdm2 must describe the same stimuli (the same number of pairs); got "
            f"{out[0].shape[-1]} and {out[1].shape[-1]} pairs."
        )
    return out[0], (out[1].to(out[0].device) if out[1] is not None else None)
