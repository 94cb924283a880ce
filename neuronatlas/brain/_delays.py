"""Time delays (a finite impulse response model) for slow or lagged responses (fMRI, EEG).

A response at time ``t`` may depend on the stimulus features at ``t - d`` for several lags ``d``
(the hemodynamic response peaks 4-6 s after a stimulus). The FIR encoding model of fMRI
("Natural speech reveals the semantic maps that tile human cerebral cortex", Huth et al.,
2016) fits one weight per feature and lag on delayed copies of the features:

``delayed[t, k·p + j] = X[t - delays[k], j]`` when ``0 ≤ t - delays[k] < n_run``, else 0,

for feature ``j`` of ``p``, lag ``delays[k]`` (in samples: volumes or EEG samples; negative
lags look ahead), with ``t`` counted within its run so that no copy crosses a run boundary.
The copies are stacked lag by lag: columns ``[0, p)`` are lag ``delays[0]``, and so on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuronatlas.errors import DataError

__all__ = ["delay_features"]


def delay_features(X: Any, delays: Any = (1, 2, 3, 4), *, runs: Any = None) -> Tensor:
    """Delayed copies of the features, one block of columns per lag.

    Args:
        X: ``(time, feature)`` features, rows in time order.
        delays: lags in samples (integers, distinct; 0 = no delay, negative = ahead).
        runs: ``(time,)`` run label of each row (rows of a run contiguous); copies never cross
            from one run into another. ``None``: one run.

    Returns:
        ``(time, feature · len(delays))`` tensor, dtype of ``X``.

    Raises:
        DataError: bad delays, a non-2-D ``X``, or runs that are not contiguous.

    Examples:
        >>> X = torch.tensor([[1.0], [2.0], [3.0]])
        >>> delay_features(X, [0, 1]).tolist()
        [[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]]
    """
    x = X if isinstance(X, Tensor) else torch.as_tensor(np.asarray(X))
    if x.dim() != 2:
        raise DataError(f"X must be (time, feature); got shape {tuple(x.shape)}.")
    lags = np.asarray(delays).reshape(-1)
    if len(lags) == 0 or not np.issubdtype(lags.dtype, np.integer):
        raise DataError(f"delays must be a non-empty list of integers (samples); got {delays!r}.")
    if len(np.unique(lags)) != len(lags):
        raise DataError(f"delays must not repeat a lag; got {lags.tolist()}.")
    n = x.shape[0]
    if runs is None:
        bounds = [(0, n)]
    else:
        lab = np.asarray(runs).reshape(-1)
        if len(lab) != n:
            raise DataError(f"runs must have one label per row ({n}); got {len(lab)}.")
        change = np.flatnonzero(lab[1:] != lab[:-1]) + 1
        starts = np.concatenate([[0], change])
        stops = np.concatenate([change, [n]])
        if len(np.unique(lab[starts])) != len(starts):
            raise DataError("The rows of each run must be contiguous (sort them by run and time).")
        bounds = list(zip(starts.tolist(), stops.tolist(), strict=True))
    p = x.shape[1]
    out = x.new_zeros(n, p * len(lags))
    for k, d in enumerate(lags.tolist()):
        cols = slice(k * p, (k + 1) * p)
        for a, b in bounds:
            if d >= 0 and d < b - a:
                out[a + d : b, cols] = x[a : b - d]
            elif d < 0 and -d < b - a:
                out[a : b + d, cols] = x[a - d : b]
    return out
