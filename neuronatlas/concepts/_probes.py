"""Linear probes with a control task and a shuffled-label baseline.

A probe asks whether a property of the input can be read linearly from a site's activations.
Accuracy alone does not say that the site *encodes* it: a flexible probe can memorize. Two
baselines, trained and tested exactly like the probe (same rows, same split, same
regularization), tell the difference:

- **control task** — "Designing and Interpreting Probes with Control Tasks" (Hewitt & Liang,
  2019): every token type (``token_id``) gets one label drawn at random from the empirical
  label distribution, fixed for all its occurrences. The control task is learnable only by
  memorizing types. **Selectivity = accuracy − control accuracy** (for regression, R² −
  control R²); a probe is selective when it reads the property, not the token identity.
- **shuffled labels**: labels permuted across rows; the probe's score on them is chance
  (the majority rate on balanced data, R² ≈ 0), a check of the whole pipeline.

The probe itself is L2 logistic regression (classification) or ridge regression (regression)
on standardized activations; the regularization is chosen by k-fold cross-validation on the
training rows over a grid, then the probe is refit on all training rows and scored on the
held-out test rows (accuracy; R² for regression).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuronatlas.atlas import open_atlas
from neuronatlas.concepts._common import (
    ConceptError,
    save_table,
)
from neuronatlas.concepts._data import labelled_rows, read_rows
from neuronatlas.concepts._labels import token_labels
from neuronatlas.concepts._linear import (
    LinearFit,
    cv_logistic,
    cv_ridge,
    fit_logistic,
    fit_ridge,
    kfold,
)

if TYPE_CHECKING:
    import pandas as pd

    from neuronatlas.atlas import Atlas

__all__ = [
    "ALPHA_GRID",
    "C_GRID",
    "ProbeResult",
    "control_labels",
    "probe",
    "probe_atlas",
    "split",
]

#: Default grid of the logistic probe's inverse regularization ``C``.
C_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: Default grid of the ridge probe's ``alpha``.
ALPHA_GRID: tuple[float, ...] = (1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5)


@dataclass
class ProbeResult:
    """What one probe found.

    Attributes:
        task: ``"classification"`` or ``"regression"``. metric: ``"accuracy"`` or ``"r2"``.
        grid: the regularization values tried (``C`` or ``alpha``).
        cv: ``(grid, fold)`` cross-validated scores on the training rows.
        best: the chosen regularization value.
        score: test score of the probe refit at ``best``.
        control_score, selectivity: the control task's test score and ``score - control_score``.
        shuffled_score: test score on shuffled labels.
        chance: majority-class rate of the test rows (classification) or 0 (R²).
        n_train, n_test: rows.
        fit: the probe (raw activation units).
    """

    task: str
    metric: str
    grid: list[float]
    cv: np.ndarray
    best: float
    score: float
    control_score: float | None
    selectivity: float | None
    shuffled_score: float | None
    chance: float
    n_train: int
    n_test: int
    fit: LinearFit = field(repr=False)


def split(n: int, test_size: float, seed: int, y: np.ndarray | None = None) -> np.ndarray:
    """A boolean test mask of about ``test_size * n`` rows (stratified by ``y`` if given)."""
    if not 0 < test_size < 1:
        raise ConceptError(f"test_size must be in (0, 1); got {test_size}.")
    parts = max(2, round(1 / test_size))
    return kfold(n, parts, seed + 7919, y) == 0


def control_labels(types: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """The control task of Hewitt & Liang (2019): one random label per type.

    Each distinct value of ``types`` (a token id) gets a label drawn from the empirical
    distribution of ``y``, and every occurrence of that type carries it.

    Examples:
        >>> c = control_labels(np.array([5, 7, 5, 9, 7]), np.array([0, 1, 1, 0, 1]))
        >>> bool(c[0] == c[2]) and bool(c[1] == c[4])
        True
    """
    uniq, inverse = np.unique(types, return_inverse=True)
    rng = np.random.default_rng(seed + 104729)
    drawn = y[rng.integers(0, len(y), size=len(uniq))]
    return drawn[inverse]


def _score(task: str, fit: LinearFit, x: np.ndarray, y: np.ndarray) -> float:
    pred = fit.predict(x)
    if task == "classification":
        return float((pred == y).mean())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")


def probe(
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str = "classification",
    grid: Sequence[float] | None = None,
    folds: int = 5,
    test_size: float = 0.2,
    types: np.ndarray | None = None,
    shuffled: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> ProbeResult:
    """Train and test a linear probe of ``y`` from ``x``, with its baselines.

    Args:
        x: ``(row, unit)`` activations. y: ``(row,)`` labels (classes) or targets (numbers).
        task: ``"classification"`` (L2 logistic regression, accuracy) or ``"regression"``
            (ridge, R²).
        grid: regularization values (``C`` for logistic, ``alpha`` for ridge); defaults
            :data:`C_GRID` / :data:`ALPHA_GRID`.
        folds: cross-validation folds on the training rows.
        test_size: fraction of rows held out for the test score.
        types: ``(row,)`` token type of each row; enables the control task.
        shuffled: also score the shuffled-label baseline.
        seed: seeds the split, the folds, the control task and the shuffle.
        device, dtype: where the logistic probe is fitted (ridge uses float64).

    Returns:
        A :class:`ProbeResult`.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(400, 5)); y = (x[:, 0] > 0).astype(int)
        >>> r = probe(x, y, types=rng.integers(0, 50, 400))
        >>> r.score > 0.9, r.metric
        (True, 'accuracy')
    """
    if task not in ("classification", "regression"):
        raise ConceptError(f"task must be 'classification' or 'regression'; got {task!r}.")
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or len(x) != len(y):
        raise ConceptError(
            f"Expected x of shape (row, unit) and y of shape (row,) with the same rows; got "
            f"x {x.shape} and y {y.shape}."
        )
    classify = task == "classification"
    if not classify:
        y = y.astype(np.float64)
    grid = list(grid if grid is not None else (C_GRID if classify else ALPHA_GRID))
    test = split(len(y), test_size, seed, y if classify else None)
    xtr, ytr, xte, yte = x[~test], y[~test], x[test], y[test]
    if classify and len(np.unique(ytr)) < 2:
        raise ConceptError("The training rows hold a single class; give more rows of each class.")
    fold = kfold(len(ytr), folds, seed, ytr if classify else None)

    def fit(labels: np.ndarray, value: float) -> LinearFit:
        if classify:
            return fit_logistic(xtr, labels, value, device=device, dtype=dtype)
        return fit_ridge(xtr, labels, value, device=device)

    if classify:
        cv = cv_logistic(xtr, ytr, fold, grid, device=device, dtype=dtype)
    else:
        cv = cv_ridge(xtr, ytr, fold, grid, device=device)
    best = grid[int(np.nanargmax(cv.mean(1)))]
    model = fit(ytr, best)
    score = _score(task, model, xte, yte)

    control_score = selectivity = None
    if types is not None:
        ctrl = control_labels(np.asarray(types), y, seed)
        ctr, cte = ctrl[~test], ctrl[test]
        if not classify or len(np.unique(ctr)) > 1:
            control_score = _score(task, fit(ctr, best), xte, cte)
            selectivity = score - control_score
    shuffled_score = None
    if shuffled:
        perm = np.random.default_rng(seed + 15485863).permutation(y)
        shuffled_score = _score(task, fit(perm[~test], best), xte, perm[test])
    if classify:
        _, counts = np.unique(yte, return_counts=True)
        chance = float(counts.max() / counts.sum())
    else:
        chance = 0.0
    return ProbeResult(
        task=task,
        metric="accuracy" if classify else "r2",
        grid=grid,
        cv=cv,
        best=best,
        score=score,
        control_score=control_score,
        selectivity=selectivity,
        shuffled_score=shuffled_score,
        chance=chance,
        n_train=int((~test).sum()),
        n_test=int(test.sum()),
        fit=model,
    )


def analysis_name(label: str, suffix: str = "") -> str:
    """A folder name for the analyses of ``label`` (``sql:`` expressions get a short hash)."""
    if label.startswith("sql:"):
        base = "sql-" + hashlib.sha1(label.encode()).hexdigest()[:8]
    else:
        base = re.sub(r"[^A-Za-z0-9._-]", "-", label)[:100]
    return base + suffix


def save_probe_analysis(
    atlas: Atlas,
    key: str,
    tables: dict[str, pd.DataFrame],
    *,
    method: str,
    spec: Any,
    sites: list[str],
    sample: Any,
    settings: dict[str, Any],
) -> None:
    """Write ``tables`` (``{file name: table}``) in ``analyses/probes/<key>/`` and record them
    with the label and sample that every probe method describes itself by."""
    from neuronatlas.atlas import add_analysis, analysis_dir

    folder = analysis_dir(atlas.path, "probes", key)
    files = [save_table(table, folder / file) for file, table in tables.items()]
    add_analysis(
        atlas.path,
        "probes",
        key,
        files=files,
        method=method,
        label=spec.name,
        label_description=spec.description,
        task=spec.task,
        sites=sites,
        n_labelled=sample.n_labelled,
        class_counts=sample.class_counts,
        settings=settings,
    )


def resolve_sites(atlas: Atlas, store: Any, sites: str | Sequence[str] | None) -> list[str]:
    """The sites to probe: all stored sites by default, or the given ones (comma-separated ok)."""
    if sites is None:
        return [s for s in atlas.sites if s in store.sites]
    names = [s.strip() for s in sites.split(",")] if isinstance(sites, str) else list(sites)
    for s in names:
        atlas.store(s)
    return names


def probe_atlas(
    atlas: str | Path | Atlas,
    label: str,
    *,
    sites: str | Sequence[str] | None = None,
    name: str | None = None,
    max_rows: int = 20_000,
    balance: bool = True,
    grid: Sequence[float] | None = None,
    folds: int = 5,
    test_size: float = 0.2,
    control: bool = True,
    shuffled: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    save: bool = True,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Probe every site of an atlas for a token label; save the results in the atlas.

    Args:
        atlas: an atlas built with ``keep_activations`` (or its path).
        label: a token label (see :func:`~neuronatlas.concepts.token_labels`).
        sites: sites to probe (default: all sites of the activation store).
        name: the analysis name (default: the label's name).
        max_rows: rows sampled from the store (the memory bound: ``max_rows × units``).
        balance: sample classes equally (classification).
        grid, folds, test_size, seed, device: as in :func:`probe`.
        control, shuffled: run the control task and the shuffled baseline.
        save: write ``analyses/probes/<name>/`` and record it in ``atlas.json``.
        progress: called with each site name before it is probed.

    Returns:
        One row per site: ``site, layer, kind, label, task, metric, score, control_score,
        selectivity, shuffled_score, chance, best, cv_score, n_train, n_test, n_nonfinite``.
    """
    import pandas as pd

    a = open_atlas(atlas)
    store = a.store()
    names = resolve_sites(a, store, sites)
    labels, spec = token_labels(a, label)
    sample = labelled_rows(
        store, labels, task=spec.task, max_rows=max_rows, balance=balance, seed=seed
    )
    rows, cv_rows, weights = [], [], []
    for site in names:
        if progress is not None:
            progress(site)
        x, finite = read_rows(store, site, sample.rows)
        y, types = sample.label[finite], sample.token_id[finite]
        r = probe(
            x,
            y,
            task=spec.task,
            grid=grid,
            folds=folds,
            test_size=test_size,
            types=types if control else None,
            shuffled=shuffled,
            seed=seed,
            device=device,
        )
        info = a.site_info(site)
        rows.append(
            {
                "site": site,
                "layer": info.get("layer"),
                "kind": info.get("kind"),
                "label": spec.name,
                "task": r.task,
                "metric": r.metric,
                "score": r.score,
                "control_score": r.control_score,
                "selectivity": r.selectivity,
                "shuffled_score": r.shuffled_score,
                "chance": r.chance,
                "best": r.best,
                "cv_score": float(r.cv.mean(1).max()),
                "n_train": r.n_train,
                "n_test": r.n_test,
                "n_nonfinite": int((~finite).sum()),
            }
        )
        for gi, g in enumerate(r.grid):
            for fi, s in enumerate(r.cv[gi]):
                cv_rows.append({"site": site, "param": g, "fold": fi, "score": float(s)})
        coef = np.atleast_2d(r.fit.coef)
        for ci, vec in enumerate(coef):
            weights.append(
                {
                    "site": site,
                    "class": str(r.fit.classes[ci + (1 if len(coef) == 1 else 0)])
                    if r.fit.classes is not None
                    else None,
                    "coef": vec.astype(np.float32).tolist(),
                    "intercept": float(np.atleast_1d(r.fit.intercept)[ci]),
                }
            )
    table = pd.DataFrame(rows)
    if save:
        save_probe_analysis(
            a,
            name or analysis_name(spec.name),
            {
                "results.parquet": table,
                "cv.parquet": pd.DataFrame(cv_rows),
                "weights.parquet": pd.DataFrame(weights),
            },
            method="linear",
            spec=spec,
            sites=names,
            sample=sample,
            settings={
                "max_rows": max_rows,
                "balance": balance,
                "grid": list(grid) if grid is not None else None,
                "folds": folds,
                "test_size": test_size,
                "control": control,
                "shuffled": shuffled,
                "seed": seed,
            },
        )
    return table
