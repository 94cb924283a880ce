"""k-sparse probing: the fewest units that read out a binary feature.

"Finding Neurons in a Haystack: Case Studies with Sparse Probing" (Gurnee, Nanda, Pauly,
Harvey, Troitskii & Bertsimas, 2023). On a balanced labelled sample split into train and test:

1. rank the units on the training rows with a cheap heuristic:
   - ``mean_diff`` (default): ``|mean(x_u | y = 1) - mean(x_u | y = 0)|``, the difference
     of the class-conditional means of the raw activation;
   - ``l1``: the order in which units enter an L1-regularized logistic regression as its
     regularization weakens (scikit-learn ``liblinear`` on standardized activations, along
     ``C = l1_min_c · 2^i``), ties broken by ``|coef|``;
   - ``omp``: the order in which orthogonal matching pursuit (scikit-learn
     ``orthogonal_mp`` on standardized activations, target ``y ∈ {-1, 1}``) selects units;
2. for each ``k`` in ``1, 2, 4, …, 64``, train an L2 logistic probe on the top ``k`` units
   and report its F1 score (positive class) and accuracy on the test rows;
3. single-neuron candidates: each of the top ``n_candidates`` units alone (``k = 1``) as a
   probe; a unit whose test F1 reaches ``min_f1`` (0.8 by default, our choice; the paper reads
   the curves) is a candidate neuron for the feature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from neuronatlas._lazy import require
from neuronatlas.atlas import open_atlas
from neuronatlas.concepts._common import ConceptError
from neuronatlas.concepts._data import labelled_rows, read_rows
from neuronatlas.concepts._labels import token_labels
from neuronatlas.concepts._linear import fit_logistic
from neuronatlas.concepts._probes import analysis_name, resolve_sites, save_probe_analysis, split

if TYPE_CHECKING:
    import pandas as pd

    from neuronatlas.atlas import Atlas

__all__ = [
    "KS",
    "RANKINGS",
    "SparseProbeResult",
    "f1_score",
    "rank_units",
    "sparse_probe",
    "sparse_probe_atlas",
]

#: Default k of the accuracy-vs-k curve.
KS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


def f1_score(pred: np.ndarray, y: np.ndarray) -> float:
    """F1 of the positive class (``1``/``True``); 0 when nothing is predicted or true."""
    pred, y = np.asarray(pred, bool), np.asarray(y, bool)
    tp = float((pred & y).sum())
    denom = float(pred.sum() + y.sum())
    return 2 * tp / denom if denom else 0.0


def _binary(y: np.ndarray) -> np.ndarray:
    values = np.unique(y)
    if len(values) != 2:
        raise ConceptError(
            f"k-sparse probing needs a binary label; this one takes {len(values)} values "
            f"({values[:6].tolist()}...)."
        )
    return y == values[1]


def _rank_mean_diff(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    diff = x[y].mean(0, dtype=np.float64) - x[~y].mean(0, dtype=np.float64)
    return np.abs(diff)


def _standardize(x: np.ndarray) -> np.ndarray:
    std = x.std(0)
    return (x - x.mean(0)) / np.where(std > 0, std, 1.0)


def _sklearn_at_least(major: int, minor: int) -> bool:
    import sklearn

    parts = sklearn.__version__.split(".")
    return (int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)) >= (
        major,
        minor,
    )


def _rank_l1(x: np.ndarray, y: np.ndarray, k_max: int) -> np.ndarray:
    svm = require("sklearn.svm")
    lm = require("sklearn.linear_model")
    xs = _standardize(x.astype(np.float64))
    c0 = float(svm.l1_min_c(xs, y, loss="log"))
    entered = np.full(x.shape[1], np.inf)
    # scikit-learn >= 1.8 spells the L1 penalty l1_ratio=1 (penalty= is deprecated there)
    l1 = {"l1_ratio": 1.0} if _sklearn_at_least(1, 8) else {"penalty": "l1"}
    model = lm.LogisticRegression(
        solver="liblinear", warm_start=True, max_iter=1000, tol=1e-4, random_state=0, **l1
    )
    coef = np.zeros(x.shape[1])
    for i in range(40):
        model.set_params(C=c0 * 2 ** (i / 2))
        model.fit(xs, y)
        coef = model.coef_[0]
        new = (coef != 0) & ~np.isfinite(entered)
        entered[new] = i
        if np.isfinite(entered).sum() >= k_max:
            break
    return -entered + np.abs(coef) / (1 + np.abs(coef).max())  # earlier entry ranks higher


def _rank_omp(x: np.ndarray, y: np.ndarray, k_max: int) -> np.ndarray:
    omp = require("sklearn.linear_model")
    xs = _standardize(x.astype(np.float64))
    k = min(k_max, x.shape[1])
    _, path = (
        None,
        omp.orthogonal_mp(xs, np.where(y, 1.0, -1.0), n_nonzero_coefs=k, return_path=True),
    )
    path = np.asarray(path).reshape(x.shape[1], -1)
    score = np.zeros(x.shape[1])
    for step in range(path.shape[1]):
        new = (path[:, step] != 0) & (score == 0)
        score[new] = path.shape[1] - step
    return score


RANKINGS = ("mean_diff", "l1", "omp")


def rank_units(
    x: np.ndarray, y: np.ndarray, method: str = "mean_diff", k_max: int = 64
) -> np.ndarray:
    """Units ordered best first by ``method`` (see the module docs).

    Args:
        x: ``(row, unit)`` activations. y: ``(row,)`` binary labels.
        method: ``mean_diff``, ``l1`` or ``omp``. k_max: units the path methods need to find.

    Returns:
        ``(unit,)`` unit indices, best first.

    Examples:
        >>> x = np.array([[0.0, 1.0], [0.0, 3.0], [1.0, 1.0], [1.0, 3.0]])
        >>> rank_units(x, np.array([0, 1, 0, 1])).tolist()
        [1, 0]
    """
    yb = _binary(np.asarray(y))
    if method == "mean_diff":
        score = _rank_mean_diff(x, yb)
    elif method == "l1":
        score = _rank_l1(x, yb, k_max)
    elif method == "omp":
        score = _rank_omp(x, yb, k_max)
    else:
        raise ConceptError(f"Unknown ranking {method!r}; choose one of {list(RANKINGS)}.")
    return np.argsort(-score, kind="stable")


@dataclass
class SparseProbeResult:
    """Accuracy vs k and the single-neuron candidates.

    Attributes:
        curve: DataFrame ``k, f1, accuracy, units`` (the top-k units used).
        neurons: DataFrame ``rank, unit, score, f1, accuracy, candidate`` for the top
            ``n_candidates`` units, each alone.
        order: ``(unit,)`` ranking (best first).
    """

    curve: pd.DataFrame
    neurons: pd.DataFrame
    order: np.ndarray


def sparse_probe(
    x: np.ndarray,
    y: np.ndarray,
    *,
    ks: Sequence[int] = KS,
    method: str = "mean_diff",
    c: float = 1.0,
    n_candidates: int = 16,
    min_f1: float = 0.8,
    test_size: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> SparseProbeResult:
    """k-sparse probing of a binary label (Gurnee et al., 2023; see the module docs).

    Args:
        x: ``(row, unit)`` activations. y: ``(row,)`` binary labels (balanced is best).
        ks: the k to probe (capped at the number of units).
        method: unit ranking, ``mean_diff``, ``l1`` or ``omp``.
        c: the L2 logistic probe's inverse regularization on standardized units.
        n_candidates, min_f1: single-neuron probes of the top units, and the F1 a candidate
            neuron must reach.
        test_size, seed, device: held-out fraction, seed of the split, where to fit.

    Returns:
        A :class:`SparseProbeResult`.
    """
    import pandas as pd

    x = np.asarray(x, np.float32)
    yb = _binary(np.asarray(y))
    test = split(len(yb), test_size, seed, yb)
    xtr, ytr, xte, yte = x[~test], yb[~test], x[test], yb[test]
    ks = sorted({min(int(k), x.shape[1]) for k in ks if int(k) >= 1})
    order = rank_units(xtr, ytr, method, max(ks))
    ranking_score = _rank_mean_diff(xtr, ytr)

    def run(units: np.ndarray) -> tuple[float, float]:
        fit = fit_logistic(xtr[:, units], ytr, c, device=device)
        pred = fit.predict(xte[:, units]).astype(bool)
        return f1_score(pred, yte), float((pred == yte).mean())

    curve = []
    for k in ks:
        units = order[:k]
        f1, acc = run(units)
        curve.append({"k": k, "f1": f1, "accuracy": acc, "units": units.tolist()})
    neurons = []
    for rank, u in enumerate(order[: min(n_candidates, x.shape[1])]):
        f1, acc = run(np.array([u]))
        neurons.append(
            {
                "rank": rank,
                "unit": int(u),
                "mean_diff": float(ranking_score[u]),
                "f1": f1,
                "accuracy": acc,
                "candidate": f1 >= min_f1,
            }
        )
    return SparseProbeResult(pd.DataFrame(curve), pd.DataFrame(neurons), order)


def sparse_probe_atlas(
    atlas: str | Path | Atlas,
    label: str,
    *,
    sites: str | Sequence[str] | None = None,
    name: str | None = None,
    ks: Sequence[int] = KS,
    method: str = "mean_diff",
    c: float = 1.0,
    n_candidates: int = 16,
    min_f1: float = 0.8,
    max_rows: int = 20_000,
    test_size: float = 0.2,
    seed: int = 0,
    device: str | torch.device | None = None,
    save: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """k-sparse probing of every site of an atlas for a binary token label.

    Rows are a class-balanced sample of at most ``max_rows`` stored tokens. Saved to
    ``analyses/probes/<name>/`` (default name ``<label>-sparse``) as ``curve.parquet`` and
    ``neurons.parquet``.

    Returns:
        ``(curve, neurons)``: the curve per site (``site, layer, k, f1, accuracy, units``) and
        the single-neuron probes per site (``site, layer, rank, unit, mean_diff, f1, accuracy,
        candidate``).
    """
    import pandas as pd

    a = open_atlas(atlas)
    store = a.store()
    names = resolve_sites(a, store, sites)
    labels, spec = token_labels(a, label)
    if spec.task != "classification":
        raise ConceptError(
            f"k-sparse probing needs a binary label; {label!r} is a {spec.task} target."
        )
    sample = labelled_rows(store, labels, task="classification", max_rows=max_rows, seed=seed)
    curves, neurons = [], []
    for site in names:
        if progress is not None:
            progress(site)
        x, finite = read_rows(store, site, sample.rows)
        r = sparse_probe(
            x,
            sample.label[finite],
            ks=ks,
            method=method,
            c=c,
            n_candidates=n_candidates,
            min_f1=min_f1,
            test_size=test_size,
            seed=seed,
            device=device,
        )
        layer = a.site_info(site).get("layer")
        curves.append(r.curve.assign(site=site, layer=layer))
        neurons.append(r.neurons.assign(site=site, layer=layer))
    curve = pd.concat(curves, ignore_index=True)
    cand = pd.concat(neurons, ignore_index=True)
    front = ["site", "layer"]
    curve = curve[front + [c_ for c_ in curve.columns if c_ not in front]]
    cand = cand[front + [c_ for c_ in cand.columns if c_ not in front]]
    if save:
        save_probe_analysis(
            a,
            name or analysis_name(spec.name, "-sparse"),
            {"curve.parquet": curve, "neurons.parquet": cand},
            method="k-sparse",
            spec=spec,
            sites=names,
            sample=sample,
            settings={
                "ks": list(ks),
                "ranking": method,
                "c": c,
                "n_candidates": n_candidates,
                "min_f1": min_f1,
                "max_rows": max_rows,
                "test_size": test_size,
                "seed": seed,
            },
        )
    return curve, cand
