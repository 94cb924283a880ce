"""Net2Vec: how a concept is encoded by one unit versus a combination of units.

"Net2Vec: Quantifying and Explaining how Concepts are Encoded by Filters in Deep Neural
Networks" (Fong & Vedaldi, 2018). A concept gets a weight vector over the units of a site,
learned as a linear combination of their activations: ``p = sigmoid(w · x + b)``, trained with
the class-balanced binary cross-entropy of the paper,
``-(1/N) Σ [α y log p + (1 - α)(1 - y) log(1 - p)]`` with ``α = 1 - mean(y)``, plus an L2 term
(``c`` as scikit-learn's ``C`` on standardized units). The concept is predicted where
``p > 0.5``.

The paper scores segmentation with the **set IoU** over all pixels of a dataset,
``|pred ∩ true| / |pred ∪ true|``. For tokens we use the same quantity over all tokens of
the held-out rows (a token plays the role of a pixel; this is the classification analogue).
A single unit predicts the concept where its activation exceeds a threshold; the paper uses the
dissection threshold (the top 0.5% quantile), which suits pixel masks but not token concepts
with other base rates, so here each unit's threshold is the one that maximizes its set IoU on
the training rows (an optimistic choice for single units). Reported: the combination's IoU, the
best single unit's IoU, and the learned concept-to-unit weights (in raw activation units).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from neuronatlas.atlas import open_atlas
from neuronatlas.concepts._common import ConceptError
from neuronatlas.concepts._data import labelled_rows, read_rows
from neuronatlas.concepts._labels import token_labels
from neuronatlas.concepts._linear import fit_logistic
from neuronatlas.concepts._probes import analysis_name, resolve_sites, save_probe_analysis, split

if TYPE_CHECKING:
    import pandas as pd

    from neuronatlas.atlas import Atlas

__all__ = ["Net2VecResult", "net2vec", "net2vec_atlas", "set_iou", "unit_ious"]


def set_iou(pred: np.ndarray, y: np.ndarray) -> float:
    """Set IoU ``|pred ∩ y| / |pred ∪ y|`` over all entries (0 when both are empty)."""
    pred, y = np.asarray(pred, bool), np.asarray(y, bool)
    union = float((pred | y).sum())
    return float((pred & y).sum()) / union if union else 0.0


def unit_ious(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each unit, the threshold maximizing the set IoU of ``x_u > t`` with ``y``.

    Args:
        x: ``(row, unit)``. y: ``(row,)`` booleans.

    Returns:
        ``(iou, threshold)``, each ``(unit,)``; predicting ``x_u > threshold_u``.

    Examples:
        >>> iou, t = unit_ious(np.array([[0.0], [2.0], [3.0]]), np.array([False, True, True]))
        >>> float(iou[0]), float(t[0])
        (1.0, 0.0)
    """
    xt = torch.as_tensor(np.asarray(x, np.float32))
    yt = torch.as_tensor(np.asarray(y, bool))
    vals, idx = torch.sort(xt, dim=0, descending=True)
    hits = yt[idx].to(torch.float64).cumsum(0)  # true positives when predicting the top m
    m = torch.arange(1, len(xt) + 1, dtype=torch.float64)[:, None]
    iou = hits / (yt.sum() + m - hits)
    # a threshold between ties is impossible: only count cut points where the value changes
    valid = torch.ones_like(vals, dtype=torch.bool)
    valid[:-1] = vals[:-1] != vals[1:]
    iou = torch.where(valid, iou, torch.zeros_like(iou))
    best = iou.argmax(0)
    cols = torch.arange(xt.shape[1])
    below = torch.where(
        best + 1 < len(xt), vals[(best + 1).clamp_max(len(xt) - 1), cols], vals[best, cols] - 1
    )
    return iou[best, cols].numpy(), below.numpy()


@dataclass
class Net2VecResult:
    """Single unit vs combination for one concept.

    Attributes:
        iou_combination: test set IoU of ``sigmoid(w·x + b) > 0.5``.
        iou_best_unit: test set IoU of the unit that was best on the training rows.
        best_unit: that unit. weights: ``(unit,)`` concept-to-unit weights; bias: intercept.
        units: DataFrame ``unit, weight, train_iou, threshold, test_iou`` sorted by ``weight``.
    """

    iou_combination: float
    iou_best_unit: float
    best_unit: int
    weights: np.ndarray
    bias: float
    units: pd.DataFrame


def net2vec(
    x: np.ndarray,
    y: np.ndarray,
    *,
    c: float = 1.0,
    test_size: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> Net2VecResult:
    """Learn a concept's unit weights and compare with the best single unit (see module docs).

    Args:
        x: ``(row, unit)`` activations. y: ``(row,)`` booleans, at their natural rate.
        c: inverse L2 regularization (standardized units). test_size, seed: the split.

    Returns:
        A :class:`Net2VecResult`.
    """
    import pandas as pd

    x = np.asarray(x, np.float32)
    values = np.unique(y)
    if len(values) != 2:
        raise ConceptError(f"Net2Vec needs a binary concept; got {len(values)} label values.")
    yb = np.asarray(y) == values[1]
    test = split(len(yb), test_size, seed, yb)
    xtr, ytr, xte, yte = x[~test], yb[~test], x[test], yb[test]
    alpha = 1.0 - float(ytr.mean())
    weight = np.where(ytr, alpha, 1.0 - alpha)
    fit = fit_logistic(xtr, ytr, c, sample_weight=weight, device=device)
    iou_comb = set_iou(fit.decision(xte) > 0, yte)
    train_iou, thr = unit_ious(xtr, ytr)
    test_iou = np.array([set_iou(xte[:, u] > thr[u], yte) for u in range(x.shape[1])])
    best = int(np.argmax(train_iou))
    units = pd.DataFrame(
        {
            "unit": np.arange(x.shape[1]),
            "weight": fit.coef,
            "train_iou": train_iou,
            "threshold": thr,
            "test_iou": test_iou,
        }
    ).sort_values("weight", ascending=False, key=np.abs, ignore_index=True)
    return Net2VecResult(
        iou_comb, float(test_iou[best]), best, fit.coef, float(fit.intercept), units
    )


def net2vec_atlas(
    atlas: str | Path | Atlas,
    label: str,
    *,
    sites: str | Sequence[str] | None = None,
    name: str | None = None,
    c: float = 1.0,
    max_rows: int = 20_000,
    test_size: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
    save: bool = True,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Net2Vec for a binary token label on every site of an atlas.

    Rows are a uniform sample (the label at its natural rate) of at most ``max_rows`` stored
    tokens. Saved to ``analyses/probes/<name>/`` (default ``<label>-net2vec``) as
    ``results.parquet`` and ``weights.parquet`` (``site, unit, weight, train_iou, threshold,
    test_iou``).

    Returns:
        One row per site: ``site, layer, iou_combination, iou_best_unit, best_unit, n_rows``.
    """
    import pandas as pd

    a = open_atlas(atlas)
    store = a.store()
    names = resolve_sites(a, store, sites)
    labels, spec = token_labels(a, label)
    if spec.task != "classification":
        raise ConceptError(f"Net2Vec needs a binary label; {label!r} is a {spec.task} target.")
    sample = labelled_rows(
        store, labels, task="classification", max_rows=max_rows, balance=False, seed=seed
    )
    rows, weights = [], []
    for site in names:
        if progress is not None:
            progress(site)
        x, finite = read_rows(store, site, sample.rows)
        r = net2vec(x, sample.label[finite], c=c, test_size=test_size, seed=seed, device=device)
        layer = a.site_info(site).get("layer")
        rows.append(
            {
                "site": site,
                "layer": layer,
                "iou_combination": r.iou_combination,
                "iou_best_unit": r.iou_best_unit,
                "best_unit": r.best_unit,
                "n_rows": len(x),
            }
        )
        weights.append(r.units.assign(site=site))
    table = pd.DataFrame(rows)
    if save:
        save_probe_analysis(
            a,
            name or analysis_name(spec.name, "-net2vec"),
            {
                "results.parquet": table,
                "weights.parquet": pd.concat(weights, ignore_index=True),
            },
            method="net2vec",
            spec=spec,
            sites=names,
            sample=sample,
            settings={"c": c, "max_rows": max_rows, "test_size": test_size, "seed": seed},
        )
    return table
