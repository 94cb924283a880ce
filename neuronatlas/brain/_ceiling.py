"""Noise ceilings from repeated trials, and scores normalized by them.

A recorded response to the same stimulus varies from trial to trial; no model can predict the
trial-to-trial noise, so the best achievable correlation with the trial-averaged response is
below 1. We use the signal power of "How linear are auditory cortical responses?" (Sahani &
Linden, 2003) and the normalized correlation of "Measuring the Performance of Neural Models"
(Schoppe, Harper, Willmore, King & Schnupp, 2016). For one target with ``N`` repeats
``r_1 … r_N`` (each a vector over stimuli) and mean ``r̄``:

- ``SP = (Var(Σ_n r_n) - Σ_n Var(r_n)) / (N (N - 1))`` — the signal power
  (equivalently ``(N·Var(r̄) - mean_n Var(r_n)) / (N - 1)``);
- ``CC_max = sqrt(SP / Var(r̄))`` — the largest correlation any model can reach with ``r̄``;
  ``SP ≤ 0`` gives ``CC_max = 0`` (no measurable signal), and ``SP > Var(r̄)`` (sampling
  noise) is capped at 1;
- ``CC_norm = CC_abs / CC_max``, with ``CC_abs`` the correlation of the prediction with ``r̄``;
  the ceiling of the coefficient of determination is ``CC_max²`` (the explainable fraction of
  the variance of ``r̄``), and the normalized R² is ``R² / CC_max²``.

Variances are over stimuli, population form (divide by the number of stimuli). Stimuli with
fewer than ``N`` repeats are dropped for the ceiling (the formula needs the same ``N`` for all).
For a target ``r_n = s + e_n`` with signal variance ``σ_s²`` and independent noise of variance
``σ_e²``, ``E[SP] = σ_s²`` and ``CC_max² → σ_s² / (σ_s² + σ_e² / N)``; the noise-ceiling SNR of
the Natural Scenes Dataset (Allen et al., 2022) is ``ncsnr = σ_s / σ_e``, so
``CC_max² = ncsnr² / (ncsnr² + 1/N)``, the same quantity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuronatlas.errors import DataError

__all__ = ["noise_ceiling", "normalize_scores"]


def noise_ceiling(repeats: Any) -> dict[str, Tensor]:
    """Signal power and the correlation ceiling ``CC_max`` of each target.

    Args:
        repeats: ``(repeat, stimulus, target)`` responses; NaN marks a missing trial. Only
            stimuli with all repeats present are used.

    Returns:
        ``{"cc_max": (target,), "signal_power": (target,), "n_repeats": int-like,
        "n_stimuli": int-like}`` (float64). ``cc_max`` is 0 where the signal power is ≤ 0 and
        NaN where the trial-averaged response is constant.

    Raises:
        DataError: fewer than 2 repeats, or fewer than 2 stimuli with all repeats.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> s = torch.randn(1, 4000, 1, generator=g, dtype=torch.float64)
        >>> reps = s + torch.randn(4, 4000, 1, generator=g, dtype=torch.float64)
        >>> round(float(noise_ceiling(reps)["cc_max"][0] ** 2), 1)  # 1 / (1 + 1/4)
        0.8
    """
    r = repeats if isinstance(repeats, Tensor) else torch.as_tensor(np.asarray(repeats))
    r = r.double()
    if r.dim() == 2:
        r = r[:, :, None]
    if r.dim() != 3:
        raise DataError(f"repeats must be (repeat, stimulus, target); got shape {tuple(r.shape)}.")
    n_rep = r.shape[0]
    if n_rep < 2:
        raise DataError(
            f"A noise ceiling needs at least 2 repeats of each stimulus; got {n_rep}. Record "
            "repeated trials, or report unnormalized scores."
        )
    complete = torch.isfinite(r).all(0).all(-1)
    if int(complete.sum()) < 2:
        raise DataError(
            f"Only {int(complete.sum())} stimuli have all {n_rep} repeats; the noise ceiling "
            "needs at least 2."
        )
    r = r[:, complete]
    mean = r.mean(0)
    var_mean = mean.var(0, unbiased=False)
    mean_var = r.var(1, unbiased=False).mean(0)
    sp = (n_rep * var_mean - mean_var) / (n_rep - 1)
    ratio = torch.where(var_mean > 0, sp / torch.where(var_mean > 0, var_mean, 1.0), torch.nan)
    cc_max = torch.sqrt(ratio.clamp(0.0, 1.0))
    cc_max = torch.where(var_mean > 0, cc_max, torch.full_like(cc_max, torch.nan))
    return {
        "cc_max": cc_max,
        "signal_power": sp,
        "n_repeats": torch.tensor(n_rep),
        "n_stimuli": torch.tensor(int(complete.sum())),
    }


def normalize_scores(r: Any, r2: Any, cc_max: Any) -> dict[str, Tensor]:
    """Scores relative to the ceiling: ``r / CC_max`` and ``R² / CC_max²``.

    NaN where ``CC_max`` is 0 or NaN (no measurable signal): such a target cannot be scored
    against its ceiling, and it is counted rather than averaged in.

    Returns:
        ``{"r_norm": (target,), "r2_norm": (target,)}`` (float64).
    """
    r_t = torch.as_tensor(np.asarray(r), dtype=torch.float64)
    r2_t = torch.as_tensor(np.asarray(r2), dtype=torch.float64)
    c = torch.as_tensor(np.asarray(cc_max), dtype=torch.float64)
    ok = torch.isfinite(c) & (c > 0)
    safe = torch.where(ok, c, 1.0)
    nan = torch.full_like(c, torch.nan)
    return {
        "r_norm": torch.where(ok, r_t / safe, nan),
        "r2_norm": torch.where(ok, r2_t / (safe * safe), nan),
    }
