"""Decoding models: brain responses → model features, scored by identification accuracy.

A ridge model (per-feature cross-validated alpha, :func:`~neuronatlas.brain.ridge_cv`) predicts
each held-out stimulus's model feature vector from the brain's response to it. The held-out
predictions are then matched to the true feature vectors by correlation, as in "Identifying
natural images from human brain activity" (Kay, Naselaris, Prenger & Gallant, 2008):

- ``C[i, j]`` = Pearson correlation, across features, of the predicted vector of stimulus ``i``
  and the true vector of stimulus ``j`` (over the held-out stimuli of the same fold);
- **pairwise accuracy** = mean over ``i`` and ``j ≠ i`` of ``[C[i, i] > C[i, j]]`` (ties count
  ½): how often the true stimulus beats one random other; chance 0.5;
- **N-way accuracy** = mean over ``i`` of the probability that ``C[i, i]`` is the largest
  among ``N`` candidates — the true one and ``N - 1`` distractors drawn without replacement
  from the other held-out stimuli. With ``k_i`` others scoring above ``C[i, i]`` among
  ``m = n - 1`` others, it is exactly ``C(m - k_i, N - 1) / C(m, N - 1)`` (no sampling; ties
  count as above); chance ``1/N``. ``N = n`` is top-1 identification among all held-out stimuli.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb
from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuronatlas.brain._ridge import DEFAULT_ALPHAS, _splits, ridge_cv
from neuronatlas.errors import DataError

__all__ = ["DecodingResult", "decode", "identification_accuracy"]


def _corr_matrix(pred: Tensor, true: Tensor) -> Tensor:
    p = pred - pred.mean(1, keepdim=True)
    t = true - true.mean(1, keepdim=True)
    p = p / p.norm(dim=1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
    t = t / t.norm(dim=1, keepdim=True).clamp_min(torch.finfo(t.dtype).tiny)
    return p @ t.T


def identification_accuracy(pred: Any, true: Any, *, n_way: int | None = None) -> dict[str, float]:
    """Pairwise and N-way identification accuracy of predicted feature vectors.

    Args:
        pred: ``(stimulus, feature)`` predicted vectors.
        true: ``(stimulus, feature)`` true vectors, same stimuli in the same order.
        n_way: candidates per trial of the N-way test (2 ≤ N ≤ stimuli); ``None``: all stimuli.

    Returns:
        ``{"pairwise": float, "n_way": float, "n": N, "chance_pairwise": 0.5,
        "chance_n_way": 1/N}``.

    Examples:
        >>> t = torch.eye(4)
        >>> identification_accuracy(t, t)["pairwise"]
        1.0
    """
    p = torch.as_tensor(np.asarray(pred), dtype=torch.float64)
    t = torch.as_tensor(np.asarray(true), dtype=torch.float64)
    if p.dim() != 2 or p.shape != t.shape:
        raise DataError(
            f"pred and true must be (stimulus, feature) of one shape; got {tuple(p.shape)} and "
            f"{tuple(t.shape)}."
        )
    n = p.shape[0]
    if n < 2:
        raise DataError(f"Identification needs at least 2 stimuli; got {n}.")
    big_n = n if n_way is None else int(n_way)
    if not 2 <= big_n <= n:
        raise DataError(f"n_way must be between 2 and the number of stimuli ({n}); got {n_way}.")
    c = _corr_matrix(p, t)
    diag = c.diag()[:, None]
    off = ~torch.eye(n, dtype=torch.bool)
    above = ((c > diag) & off).sum(1)
    ties = ((c == diag) & off).sum(1)
    pairwise = float((((c < diag) & off).sum(1) + 0.5 * ties).sum() / (n * (n - 1)))
    m = n - 1
    k = (above + ties).tolist()
    total = comb(m, big_n - 1)
    n_way_acc = float(np.mean([comb(m - ki, big_n - 1) / total for ki in k]))
    return {
        "pairwise": pairwise,
        "n_way": n_way_acc,
        "n": big_n,
        "chance_pairwise": 0.5,
        "chance_n_way": 1.0 / big_n,
    }


@dataclass
class DecodingResult:
    """What :func:`decode` returns.

    Attributes:
        pairwise: mean pairwise identification accuracy over folds.
        n_way: mean N-way accuracy over folds.
        n: the N of the N-way test.
        r2: ``(feature,)`` cross-validated R² of each model feature (from the brain).
        r: ``(feature,)`` cross-validated Pearson r of each feature.
        folds: per-fold accuracies.
        info: settings.
    """

    pairwise: float
    n_way: float
    n: int
    r2: Tensor
    r: Tensor
    folds: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def decode(
    brain: Any,
    features: Any,
    *,
    alphas: Any = DEFAULT_ALPHAS,
    cv: Any = 5,
    inner_cv: int = 5,
    n_way: int | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
) -> DecodingResult:
    """Decode model features from brain responses and score identification on held-out folds.

    For each outer fold, :func:`ridge_cv` (with ``inner_cv`` folds on the training stimuli)
    picks an alpha per feature and refits; the held-out stimuli's features are predicted and
    identified (see the module docstring). The N of the N-way test is ``n_way`` or the
    smallest held-out fold.

    Args:
        brain: ``(stimulus, unit)`` responses (e.g. trial-averaged).
        features: ``(stimulus, feature)`` model features of the same stimuli.
        alphas, dtype, device: as in :func:`ridge_cv`.
        cv: outer folds (int: contiguous ``KFold``) or a splitter / list of splits.
        inner_cv: folds of the alpha search inside each training set.
        n_way: candidates of the N-way test.

    Returns:
        A :class:`DecodingResult`.
    """
    b = torch.as_tensor(np.asarray(brain), dtype=dtype)
    f = torch.as_tensor(np.asarray(features), dtype=dtype)
    if b.dim() != 2 or f.dim() != 2 or b.shape[0] != f.shape[0]:
        raise DataError(
            "brain (stimulus, unit) and features (stimulus, feature) must have the same "
            f"stimuli; got {tuple(b.shape)} and {tuple(f.shape)}."
        )
    splits = _splits(b.shape[0], cv)
    smallest = min(len(te) for _, te in splits)
    big_n = smallest if n_way is None else int(n_way)
    if not 2 <= big_n <= smallest:
        raise DataError(
            f"n_way must be between 2 and the smallest held-out fold ({smallest}); got {n_way}."
        )
    preds = torch.zeros_like(f)
    folds = []
    for tr, te in splits:
        res = ridge_cv(b[tr], f[tr], alphas=alphas, cv=inner_cv, dtype=dtype, device=device)
        pred = b[te] @ res.coef + res.intercept
        preds[te] = pred
        folds.append(identification_accuracy(pred, f[te], n_way=big_n))
    from neuronatlas.brain._ridge import score_predictions

    r2s, rs = [], []
    for _, te in splits:
        r2, r = score_predictions(f[te], preds[te])
        r2s.append(r2)
        rs.append(r)
    return DecodingResult(
        pairwise=float(np.mean([x["pairwise"] for x in folds])),
        n_way=float(np.mean([x["n_way"] for x in folds])),
        n=big_n,
        r2=torch.stack(r2s).mean(0),
        r=torch.stack(rs).mean(0),
        folds=folds,
        info={"folds": len(splits), "inner_cv": inner_cv, "alphas": list(map(float, alphas))},
    )
