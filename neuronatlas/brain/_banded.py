"""Banded ridge regression across feature spaces, through himalaya.

When features come from several spaces (layers, models, hand-made descriptors), one alpha for
all of them lets the largest or noisiest space dominate. Banded ridge ("Voxelwise encoding
models with non-spherical multivariate normal priors", Nunez-Elizalde, Huth & Gallant, 2019;
"Feature-space selection with banded ridge regression", Dupré la Tour, Eickenberg, Nunez-Elizalde
& Gallant, 2022) gives each space ``i`` its own strength: it minimizes

``||Σ_i X_i b_i - y||² + Σ_i alpha_i ||b_i||²``

per target. himalaya solves it by random search over the simplex: space scalings ``γ`` drawn
from a Dirichlet distribution (``n_iter`` draws, the first one uniform), combined with a global
alpha from ``alphas``; the cross-validated best per target is kept and refit. We call its
``BandedRidgeCV`` (``n_stimulus ≥ n_feature``) or ``MultipleKernelRidgeCV`` with linear kernels
(``n_stimulus < n_feature``, the kernel form), and report per-target scores and the share of
each space in the prediction (R² split per space, himalaya's ``r2_score_split``:
the product-measure decomposition ``R²_i = (2 ŷ_iᵀ y - ŷ_iᵀ ŷ) / yᵀy`` on test responses and
per-space predictions with their test means removed, whose sum over spaces is the R² of the
joint prediction).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuronatlas.brain._ridge import DEFAULT_ALPHAS, _check_alphas
from neuronatlas.errors import DataError

__all__ = ["BandedResult", "banded_ridge"]


@contextlib.contextmanager
def _himalaya_backend(name: str) -> Iterator[Any]:
    from himalaya.backend import get_backend, set_backend

    before = get_backend().name
    backend = set_backend(name, on_error="raise")
    try:
        yield backend
    finally:
        set_backend(before, on_error="raise")


@dataclass
class BandedResult:
    """What :func:`banded_ridge` returns.

    Attributes:
        spaces: names of the feature spaces, in order.
        cv_r2: ``(target,)`` cross-validated R² of the best hyperparameters (mean over folds).
        alpha: ``(target,)`` the global alpha (``1 / Σ_i exp(delta_i)``).
        weights: ``(space, target)`` the relative weight ``γ_i`` of each space (sums to 1).
        test_r2: ``(target,)`` R² on the test split (when given).
        test_r2_split: ``(space, target)`` the test R² split per space (sums to ``test_r2``).
        info: settings.
    """

    spaces: list[str]
    cv_r2: Tensor
    alpha: Tensor
    weights: Tensor
    test_r2: Tensor | None = None
    test_r2_split: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _stack(spaces: dict[str, Any], n: int | None, what: str) -> list[np.ndarray]:
    arrays = []
    for name, x in spaces.items():
        a = np.asarray(x.cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
        if a.ndim != 2:
            raise DataError(f"{what} space {name!r} must be (stimulus, feature); got {a.shape}.")
        if not np.isfinite(a).all():
            raise DataError(f"{what} space {name!r} holds non-finite values (NaN/Inf).")
        if n is not None and a.shape[0] != n:
            raise DataError(f"{what} space {name!r} has {a.shape[0]} rows; expected {n}.")
        arrays.append(a)
    return arrays


def banded_ridge(
    spaces: dict[str, Any],
    Y: Any,
    *,
    test: tuple[dict[str, Any], Any] | None = None,
    alphas: Any = DEFAULT_ALPHAS,
    n_iter: int = 20,
    cv: int = 5,
    random_state: int = 0,
) -> BandedResult:
    """Fit banded ridge on several feature spaces; one set of strengths per target.

    Args:
        spaces: ``{name: (stimulus, feature)}``, at least two spaces.
        Y: ``(stimulus, target)`` responses.
        test: optional ``(spaces_test, Y_test)`` held-out data for test scores.
        alphas: grid of global strengths.
        n_iter: Dirichlet draws of space weights (the first is uniform).
        cv: contiguous folds of the search.
        random_state: seed of the draws.

    Returns:
        A :class:`BandedResult` (float64, CPU).
    """
    from neuronatlas._lazy import require

    require("himalaya")  # a clear install line when it is missing
    if not isinstance(spaces, dict) or len(spaces) < 2:
        raise DataError(
            "banded_ridge needs a dict of at least two feature spaces {name: (stimulus, feature)}; "
            f"got {type(spaces).__name__} with {len(spaces) if hasattr(spaces, '__len__') else 0}."
            " For one space use ridge_cv."
        )
    y = np.asarray(Y.cpu() if isinstance(Y, Tensor) else Y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    xs = _stack(spaces, y.shape[0], "feature")
    a = _check_alphas(alphas)
    n, p = y.shape[0], sum(x.shape[1] for x in xs)
    params = {"alphas": a, "n_iter": int(n_iter), "progress_bar": False, "score_func": None}
    from himalaya.scoring import r2_score, r2_score_split

    params["score_func"] = r2_score
    x_means = [x.mean(0) for x in xs]
    y_mean = y.mean(0)
    xs = [x - m for x, m in zip(xs, x_means, strict=True)]
    with _himalaya_backend("torch"):
        if n >= p:
            from himalaya.ridge import BandedRidgeCV

            model = BandedRidgeCV(
                groups="input", solver_params={**params, "warn": False}, fit_intercept=False,
                cv=cv, random_state=random_state,
            )  # fmt: skip
            fit_x: Any = xs
        else:
            from himalaya.kernel_ridge import ColumnKernelizer, Kernelizer, MultipleKernelRidgeCV
            from sklearn.pipeline import make_pipeline

            bounds = np.cumsum([0] + [x.shape[1] for x in xs])
            kern = ColumnKernelizer(
                [(f"k{i}", Kernelizer("linear"), slice(int(s), int(e)))
                 for i, (s, e) in enumerate(itertools.pairwise(bounds))]
            )  # fmt: skip
            model = make_pipeline(
                kern,
                MultipleKernelRidgeCV(
                    kernels="precomputed", solver="random_search", solver_params=params,
                    cv=cv, random_state=random_state,
                ),
            )  # fmt: skip
            fit_x = np.concatenate(xs, axis=1)
        model.fit(fit_x, y - y_mean)
        est = model if n >= p else model[-1]
        deltas = np.asarray(est.deltas_)
        cv_scores = np.asarray(est.cv_scores_).max(0)
        gam = np.exp(deltas)
        alpha = 1.0 / gam.sum(0)
        weights = gam * alpha[None, :]
        test_r2 = split = None
        if test is not None:
            xt = _stack(test[0], None, "test")
            if len(xt) != len(xs) or list(test[0]) != list(spaces):
                raise DataError(f"test spaces must be {list(spaces)}; got {list(test[0])}.")
            xt = [x - m for x, m in zip(xt, x_means, strict=True)]
            yt = np.asarray(test[1].cpu() if isinstance(test[1], Tensor) else test[1], np.float64)
            if yt.ndim == 1:
                yt = yt[:, None]
            arg = xt if n >= p else np.concatenate(xt, 1)
            pred_split = np.asarray(model.predict(arg, split=True))
            # the product-measure split needs zero-mean test responses and predictions
            pred_split = pred_split - pred_split.mean(1, keepdims=True)
            split = np.asarray(r2_score_split(yt - yt.mean(0), pred_split))
            test_r2 = split.sum(0)
    return BandedResult(
        spaces=list(spaces),
        cv_r2=torch.as_tensor(cv_scores),
        alpha=torch.as_tensor(alpha),
        weights=torch.as_tensor(weights),
        test_r2=None if test_r2 is None else torch.as_tensor(test_r2),
        test_r2_split=None if split is None else torch.as_tensor(split),
        info={
            "n_iter": int(n_iter),
            "cv": cv,
            "alphas": a.tolist(),
            "form": "primal" if n >= p else "kernel",
        },
    )
