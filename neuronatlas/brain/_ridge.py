"""Ridge regression with a cross-validated regularization per target, in torch.

The common case of encoding models: many targets (units, voxels, channels), a grid of
regularization strengths ``alphas`` and K folds. For each fold, one eigendecomposition of the
training features is shared by every alpha and every target; targets are processed in blocks
whose size is planned from a memory budget.

Definitions (``X`` features ``(stimulus, feature)``, ``Y`` targets ``(stimulus, target)``):

- The ridge solution for one target ``y`` and strength ``alpha`` is
  ``w = argmin ||X w - y||² + alpha ||w||²  =  (XᵀX + alpha I)⁻¹ Xᵀ y``.
  With ``fit_intercept`` (default) ``X`` and ``Y`` are centered with the means of the training
  rows, and the intercept is ``mean(y) - mean(X) w``.
- Folds: ``K`` contiguous folds in stimulus order (scikit-learn's ``KFold(K)`` without
  shuffling), or any scikit-learn splitter.
- On each fold, with the training features decomposed as ``XᵀX = V diag(λ) Vᵀ`` (when
  ``n_train ≥ n_feature``) or ``XXᵀ = Q diag(λ) Qᵀ`` (kernel form, ``n_train < n_feature``), the
  held-out predictions for every alpha are ``A diag(1 / (λ + alpha)) B`` with
  ``A = X_test V``, ``B = (X_train V)ᵀ Y_train`` (or ``A = X_test X_trainᵀ Q``,
  ``B = Qᵀ Y_train``). ``A`` and the decomposition are shared by all alphas and targets.
- Fold scores per (alpha, target): ``R² = 1 - Σ(y - ŷ)² / Σ(y - ȳ)²`` with ``ȳ`` the mean of
  the held-out rows (0 where the held-out target is constant), and Pearson's ``r`` between
  ``y`` and ``ŷ`` on the held-out rows (0 where either is constant).
- The alpha of a target maximizes the mean over folds of the selection score (R² by default),
  plus ``1e-10·log(alpha)`` so that ties go to the larger alpha (as himalaya does). The
  reported cross-validated scores are the fold means at that alpha.
- The final weights are refit on all rows with each target's chosen alpha.

The approach (one decomposition per fold, shared by all alphas and targets) is the one of
himalaya ("Feature-space selection with banded ridge regression", Dupré la Tour et al., 2022);
it is tested against himalaya and scikit-learn.

Memory: the features and one block of targets are on the device at a time; the largest
temporary is ``n_alphas × n_test × block`` predictions, never ``n × n × targets`` nor
``alphas × n × targets``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from neuronatlas.errors import DataError

__all__ = ["RidgeCVResult", "RidgeEncoder", "kfold_splits", "ridge_cv", "score_predictions"]

Score = Literal["r2", "pearson"]
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 7, 10))
_DEFAULT_BUDGET = 512 * 2**20


@dataclass
class RidgeCVResult:
    """What :func:`ridge_cv` returns.

    Attributes:
        alphas: ``(alpha,)`` the grid searched (float64, as given).
        best_alpha: ``(target,)`` the chosen alpha of each target (float64).
        best_index: ``(target,)`` its index in ``alphas``.
        r2: ``(target,)`` cross-validated R² at the chosen alpha (mean over folds).
        r: ``(target,)`` cross-validated Pearson r at the chosen alpha (mean over folds).
        fold_r2: ``(fold, alpha, target)`` R² of every fold and alpha.
        fold_r: ``(fold, alpha, target)`` Pearson r of every fold and alpha.
        coef: ``(feature, target)`` weights refit on all rows (None with ``refit=False``).
        intercept: ``(target,)`` intercepts (zeros without ``fit_intercept``).
        x_mean: ``(feature,)`` the feature means removed before the refit (zeros without
            ``fit_intercept``).
        info: settings and sizes (folds, block size, dtype, device, decomposition form).
    """

    alphas: Tensor
    best_alpha: Tensor
    best_index: Tensor
    r2: Tensor
    r: Tensor
    fold_r2: Tensor
    fold_r: Tensor
    coef: Tensor | None
    intercept: Tensor | None
    x_mean: Tensor | None
    info: dict[str, Any] = field(default_factory=dict)


def kfold_splits(n: int, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` contiguous folds over ``n`` rows, as scikit-learn's ``KFold(folds)``.

    The first ``n % folds`` folds hold one row more than the others.

    Examples:
        >>> [test.tolist() for _, test in kfold_splits(5, 2)]
        [[0, 1, 2], [3, 4]]
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise DataError(f"folds must be an integer >= 2; got {folds!r}.")
    if folds > n:
        raise DataError(f"folds ({folds}) cannot exceed the number of stimuli ({n}).")
    sizes = np.full(folds, n // folds, dtype=np.int64)
    sizes[: n % folds] += 1
    stops = np.cumsum(sizes)
    idx = np.arange(n)
    out = []
    for stop, size in zip(stops, sizes, strict=True):
        test = idx[stop - size : stop]
        train = np.concatenate([idx[: stop - size], idx[stop:]])
        out.append((train, test))
    return out


def _splits(n: int, cv: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    if isinstance(cv, int) and not isinstance(cv, bool):
        return kfold_splits(n, cv)
    if hasattr(cv, "split"):
        out = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(np.zeros((n, 1)))]
    else:
        out = [(np.asarray(tr), np.asarray(te)) for tr, te in cv]
    if not out or any(len(tr) == 0 or len(te) == 0 for tr, te in out):
        raise DataError("cv gave no split or an empty training / test set; check its settings.")
    return out


def _as_tensor(x: Any, name: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() != 2:
        raise DataError(f"{name} must be a 2-D (stimulus, …) array; got shape {tuple(t.shape)}.")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.bool)):
        raise DataError(f"{name} must hold numbers; got dtype {t.dtype}.")
    t = t.to(device=device, dtype=dtype)
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise DataError(
            f"{name} holds {bad} non-finite values (NaN/Inf) among {t.numel()}; remove or impute "
            "them first (ridge regression would spread them to every weight)."
        )
    return t


def _check_alphas(alphas: Any) -> np.ndarray:
    a = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if len(a) == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise DataError(f"alphas must be a non-empty list of positive numbers; got {alphas!r}.")
    if len(np.unique(a)) != len(a):
        raise DataError(f"alphas must not repeat a value; got {a.tolist()}.")
    return a


class _Decomposition:
    """One eigendecomposition of the training features, in the smaller of the two Gram forms.

    Predictions of ``x_test`` for alpha ``a`` are ``A diag(1/(λ + a)) (M ᵀ Y_train)`` with
    ``A = proj(x_test)``.
    """

    def __init__(self, x_train: Tensor):
        n, p = x_train.shape
        self.dual = n < p
        gram = x_train @ x_train.T if self.dual else x_train.T @ x_train
        # in the compute dtype: float32 resolves eigenvalues down to ~1e-7 of the largest (the
        # float32 Gram itself holds no more), so alphas far below that need float64
        lam, vec = torch.linalg.eigh(gram)
        self.lam = lam.clamp_min(0.0)  # round-off can make the smallest ones slightly negative
        self.x_train = x_train
        self.vec = vec
        # M: (n_train, r) so that B = Mᵀ Y_train
        self.m = vec if self.dual else x_train @ vec

    def project(self, x_test: Tensor) -> Tensor:
        """``A`` of held-out rows: ``(n_test, r)``."""
        if self.dual:
            return (x_test @ self.x_train.T) @ self.vec
        return x_test @ self.vec

    def weights(self, b_scaled: Tensor) -> Tensor:
        """Primal weights ``(feature, target)`` from ``diag(1/(λ + a_t)) B`` (``(r, target)``)."""
        if self.dual:
            return self.x_train.T @ (self.vec @ b_scaled)
        return self.vec @ b_scaled


def _plan_block(n_targets: int, n_alphas: int, n_test: int, n: int, r: int, itemsize: int,
                budget: int) -> int:  # fmt: skip
    per_target = itemsize * (n_alphas * n_test + 2 * r + 2 * n + 8 * n_alphas)
    return int(max(1, min(n_targets, budget // max(per_target, 1))))


def score_predictions(y: Tensor, pred: Tensor) -> tuple[Tensor, Tensor]:
    """R² and Pearson r of predictions, per target (and per leading index of ``pred``).

    Args:
        y: ``(stimulus, target)`` true values.
        pred: ``(stimulus, target)`` or ``(k, stimulus, target)`` predictions.

    Returns:
        ``(r2, r)``, each ``(target,)`` or ``(k, target)``. R² is 0 where ``y`` is constant;
        r is 0 where ``y`` or the prediction is constant.

    Examples:
        >>> import torch
        >>> y = torch.tensor([[1.0], [2.0], [3.0]])
        >>> r2, r = score_predictions(y, 2 * y)
        >>> round(float(r2[0]), 6), round(float(r[0]), 6)
        (-6.0, 1.0)
    """
    squeeze = pred.dim() == 2
    p = pred[None] if squeeze else pred
    n = y.shape[0]
    y_mean = y.mean(0)
    yc = y - y_mean
    syy = (yc * yc).sum(0)
    p_mean = p.mean(1)
    cov = torch.einsum("knt,nt->kt", p, yc)
    spp = (p * p).sum(1) - n * p_mean * p_mean
    sse = ((p - y) ** 2).sum(1)
    r2 = torch.where(syy > 0, 1.0 - sse / torch.where(syy > 0, syy, 1.0), torch.zeros_like(sse))
    denom = torch.sqrt(spp.clamp_min(0) * syy)
    tiny = torch.finfo(p.dtype).tiny
    r = torch.where(denom > tiny, cov / denom.clamp_min(tiny), torch.zeros_like(cov))
    return (r2[0], r[0]) if squeeze else (r2, r)


def _scores_from_sums(s_p: Tensor, s_pp: Tensor, s_py: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """R² and r per (alpha, target) from Σŷ, Σŷ², Σŷy and the held-out targets ``y``.

    ``SSE = Σŷ² - 2Σŷy + Σy²``, ``SST = Σy² - (Σy)²/n``, ``cov = Σŷy - Σŷ Σy / n``,
    ``var(ŷ) = Σŷ² - (Σŷ)²/n``; same conventions as :func:`score_predictions`.
    """
    n = y.shape[0]
    s_y = y.sum(0)
    s_yy = (y * y).sum(0)
    sst = s_yy - s_y * s_y / n
    sse = s_pp - 2 * s_py + s_yy
    cov = s_py - s_p * s_y / n
    var_p = (s_pp - s_p * s_p / n).clamp_min(0)
    ok = sst > 0
    r2 = torch.where(ok, 1.0 - sse / torch.where(ok, sst, 1.0), torch.zeros_like(sse))
    denom = torch.sqrt(var_p * sst.clamp_min(0))
    tiny = torch.finfo(y.dtype).tiny
    r = torch.where(denom > tiny, cov / denom.clamp_min(tiny), torch.zeros_like(cov))
    return r2, r


def ridge_cv(
    X: Any,
    Y: Any,
    *,
    alphas: Any = DEFAULT_ALPHAS,
    cv: Any = 5,
    fit_intercept: bool = True,
    select: Score = "r2",
    refit: bool = True,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    memory_budget: int = _DEFAULT_BUDGET,
) -> RidgeCVResult:
    """Fit ridge regressions of every column of ``Y`` on ``X``, choosing alpha per target by CV.

    Args:
        X: ``(stimulus, feature)`` features (numpy or torch).
        Y: ``(stimulus, target)`` targets.
        alphas: the grid of regularization strengths (positive, distinct).
        cv: number of contiguous folds (``KFold(cv)``), a scikit-learn splitter, or a list of
            ``(train_index, test_index)``.
        fit_intercept: center ``X`` and ``Y`` with the training means of each fold (and of the
            refit) and fit an intercept.
        select: the fold score whose mean over folds picks alpha: ``"r2"`` or ``"pearson"``.
        refit: refit on all rows with the chosen alphas (``coef``, ``intercept``).
        dtype: ``torch.float32`` (fast) or ``torch.float64`` (exact comparisons).
        device: where to compute (``None``: CPU).
        memory_budget: bytes allowed for the per-block temporaries; sets the target block size.

    Returns:
        A :class:`RidgeCVResult` (tensors on CPU).

    Raises:
        DataError: shapes that disagree, non-finite values, bad alphas or folds.

    Examples:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(200, 5, generator=g, dtype=torch.float64)
        >>> Y = X @ torch.randn(5, 3, generator=g, dtype=torch.float64)
        >>> Y += 0.1 * torch.randn(200, 3, generator=g, dtype=torch.float64)
        >>> res = ridge_cv(X, Y, alphas=[0.1, 10.0, 1000.0], dtype=torch.float64)
        >>> res.best_alpha.tolist(), bool((res.r2 > 0.99).all())
        ([0.1, 0.1, 0.1], True)
    """
    if select not in ("r2", "pearson"):
        raise DataError(f"select must be 'r2' or 'pearson'; got {select!r}.")
    if dtype not in (torch.float32, torch.float64):
        raise DataError(f"dtype must be torch.float32 or torch.float64; got {dtype!r}.")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    x = _as_tensor(X, "X (features)", dtype, dev)
    y = _as_tensor(Y, "Y (targets)", dtype, torch.device("cpu") if dev.type != "cpu" else dev)
    n, p = x.shape
    if y.shape[0] != n:
        raise DataError(
            f"X and Y must have one row per stimulus each; X has {n} rows, Y has {y.shape[0]}. "
            "Align the brain responses to the model's stimuli first."
        )
    a_np = _check_alphas(alphas)
    alpha = torch.as_tensor(a_np, dtype=dtype, device=dev)
    splits = _splits(n, cv)
    n_t, n_a, n_f = y.shape[1], len(a_np), len(splits)
    fold_r2 = torch.zeros(n_f, n_a, n_t, dtype=dtype)
    fold_r = torch.zeros(n_f, n_a, n_t, dtype=dtype)
    max_test = max(len(te) for _, te in splits)
    r_max = min(n, p)
    block = _plan_block(n_t, n_a, max_test, n, r_max, x.element_size(), memory_budget)

    for f, (tr, te) in enumerate(splits):
        tr_t, te_t = torch.as_tensor(tr, device=dev), torch.as_tensor(te, device=dev)
        xtr, xte = x[tr_t], x[te_t]
        if fit_intercept:
            mu = xtr.mean(0)
            xtr, xte = xtr - mu, xte - mu
        dec = _Decomposition(xtr)
        proj = dec.project(xte)  # A: (n_test, r)
        scale = 1.0 / (dec.lam[None, :] + alpha[:, None])  # (alpha, r)
        # Σ_n ŷ² = ||A D B||² per column = ||R D B||² with A = QR: fewer rows when r < n_test
        rows = torch.linalg.qr(proj, mode="r")[1] if proj.shape[1] < proj.shape[0] else proj
        ad = (rows[None, :, :] * scale[:, None, :]).reshape(n_a * rows.shape[0], -1)
        sum_scale = proj.sum(0)[None, :] * scale  # Σ_n of A diag(1/(λ+α)): (alpha, r)
        for start in range(0, n_t, block):
            cols = slice(start, min(n_t, start + block))
            yb = y[:, cols].to(dev)
            ytr, yte = yb[tr_t], yb[te_t]
            if fit_intercept:
                ym = ytr.mean(0)
                ytr, yte = ytr - ym, yte - ym
            b = dec.m.T @ ytr  # (r, block)
            # Σ_n ŷ and Σ_n ŷ·y need no prediction: (alpha, r) @ (r, block) products
            s_p = sum_scale @ b
            s_py = scale @ ((proj.T @ yte) * b)
            pred = (ad @ b).reshape(n_a, rows.shape[0], -1)  # the one n_alpha × n_test × block
            s_pp = torch.linalg.vector_norm(pred, dim=1).square_()
            del pred
            r2, r = _scores_from_sums(s_p, s_pp, s_py, yte)
            fold_r2[f, :, cols] = r2.cpu()
            fold_r[f, :, cols] = r.cpu()
            del b, yb, ytr, yte
        del dec, ad

    sel = (fold_r2 if select == "r2" else fold_r).double().mean(0)
    sel = sel + (torch.log(torch.as_tensor(a_np)) * 1e-10)[:, None]
    best = sel.argmax(0)
    take = best[None, None, :].expand(n_f, 1, n_t)
    r2_cv = fold_r2.gather(1, take)[:, 0].double().mean(0).to(dtype)
    r_cv = fold_r.gather(1, take)[:, 0].double().mean(0).to(dtype)

    coef = intercept = x_mean = None
    if refit:
        coef, intercept, x_mean = _refit(x, y, alpha, best, fit_intercept, dev, n_a, block)
    return RidgeCVResult(
        alphas=torch.as_tensor(a_np, dtype=torch.float64),
        best_alpha=torch.as_tensor(a_np[best.numpy()], dtype=torch.float64),
        best_index=best,
        r2=r2_cv,
        r=r_cv,
        fold_r2=fold_r2,
        fold_r=fold_r,
        coef=coef,
        intercept=intercept,
        x_mean=x_mean,
        info={
            "n_stimuli": n,
            "n_features": p,
            "n_targets": n_t,
            "folds": n_f,
            "alphas": a_np.tolist(),
            "fit_intercept": fit_intercept,
            "select": select,
            "block": block,
            "dtype": str(dtype).removeprefix("torch."),
            "device": str(dev),
            "form": "kernel" if (n - max_test) < p else "primal",
        },
    )


def _refit(
    x: Tensor, y: Tensor, alpha: Tensor, best: Tensor, fit_intercept: bool,
    dev: torch.device, n_a: int, block: int,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    mu = x.mean(0) if fit_intercept else torch.zeros(x.shape[1], dtype=x.dtype, device=dev)
    dec = _Decomposition(x - mu)
    scale = 1.0 / (dec.lam[None, :] + alpha[:, None])  # (alpha, r)
    n_t = y.shape[1]
    coef = torch.zeros(x.shape[1], n_t, dtype=x.dtype)
    intercept = torch.zeros(n_t, dtype=x.dtype)
    best_d = best.to(dev)
    # the refit has no n_alphas × n_test temporary: larger blocks fit the same budget
    step = max(block, min(n_t, block * n_a))
    for start in range(0, n_t, step):
        cols = slice(start, min(n_t, start + step))
        yb = y[:, cols].to(dev)
        ym = yb.mean(0) if fit_intercept else torch.zeros(yb.shape[1], dtype=x.dtype, device=dev)
        b = dec.m.T @ (yb - ym)
        w = dec.weights(b * scale[best_d[cols]].T)
        coef[:, cols] = w.cpu()
        intercept[cols] = (ym - mu @ w).cpu()
    return coef, intercept, mu.cpu()


class RidgeEncoder:
    """Ridge regression with a cross-validated alpha per target, as an estimator.

    ``fit`` runs :func:`ridge_cv`; ``predict`` and ``score`` use the refit weights.

    Args:
        alphas, cv, fit_intercept, select, dtype, device, memory_budget: as in :func:`ridge_cv`.

    Attributes (after ``fit``):
        best_alpha_, cv_r2_, cv_r_: per target; coef_ ``(feature, target)``, intercept_;
        result_: the whole :class:`RidgeCVResult`.

    Examples:
        >>> import torch
        >>> X = torch.randn(100, 4, dtype=torch.float64)
        >>> model = RidgeEncoder(alphas=[1.0, 10.0], dtype=torch.float64).fit(X, X[:, :2])
        >>> model.predict(X).shape
        torch.Size([100, 2])
    """

    def __init__(
        self,
        alphas: Any = DEFAULT_ALPHAS,
        *,
        cv: Any = 5,
        fit_intercept: bool = True,
        select: Score = "r2",
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
        memory_budget: int = _DEFAULT_BUDGET,
    ):
        self.alphas = alphas
        self.cv = cv
        self.fit_intercept = fit_intercept
        self.select = select
        self.dtype = dtype
        self.device = device
        self.memory_budget = memory_budget

    def fit(self, X: Any, Y: Any) -> RidgeEncoder:
        """Choose alphas by cross-validation and refit on all rows; returns ``self``."""
        res = ridge_cv(
            X, Y, alphas=self.alphas, cv=self.cv, fit_intercept=self.fit_intercept,
            select=self.select, refit=True, dtype=self.dtype, device=self.device,
            memory_budget=self.memory_budget,
        )  # fmt: skip
        self.result_ = res
        self.best_alpha_ = res.best_alpha
        self.cv_r2_ = res.r2
        self.cv_r_ = res.r
        self.coef_ = res.coef
        self.intercept_ = res.intercept
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise DataError("This RidgeEncoder is not fitted yet; call .fit(X, Y) first.")

    def predict(self, X: Any) -> Tensor:
        """``(stimulus, target)`` predictions for new features ``(stimulus, feature)``."""
        self._check_fitted()
        x = _as_tensor(X, "X (features)", self.dtype, torch.device("cpu"))
        if x.shape[1] != self.coef_.shape[0]:
            raise DataError(
                f"X has {x.shape[1]} features; the model was fit on {self.coef_.shape[0]}."
            )
        return x @ self.coef_ + self.intercept_

    def score(self, X: Any, Y: Any) -> dict[str, Tensor]:
        """Test-set scores per target: ``{"r2": (target,), "r": (target,)}``."""
        pred = self.predict(X)
        y = _as_tensor(Y, "Y (targets)", self.dtype, torch.device("cpu"))
        if y.shape != pred.shape:
            raise DataError(f"Y must have shape {tuple(pred.shape)}; got {tuple(y.shape)}.")
        r2, r = score_predictions(y, pred)
        return {"r2": r2, "r": r}
