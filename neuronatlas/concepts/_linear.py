"""Regularized linear models fitted in torch: L2 logistic regression and ridge regression.

Both match scikit-learn's objectives on standardized features, so a probe here gives the
numbers that ``make_pipeline(StandardScaler(), LogisticRegression(C=C))`` or
``make_pipeline(StandardScaler(), Ridge(alpha=a))`` give on the same rows:

- logistic (binary): minimize ``C * sum_i log(1 + exp(-s_i (x_i w + b))) + ||w||^2 / 2``
  with ``s_i = ±1``; more classes: the multinomial (softmax) loss with one weight vector per
  class, as scikit-learn's ``lbfgs`` solver;
- ridge: minimize ``||y - X w - b||^2 + alpha ||w||^2``, the intercept unpenalized.

Features are standardized with the mean and (population) standard deviation of the training
rows (constant features get a scale of 1). Cross-validation fits all folds of one ``C`` as one
block-separable problem (one matrix product per step for every fold) with L-BFGS, warm-started
along the grid of ``C`` from the strongest regularization; ridge solves every ``alpha`` from one
Gram matrix per fold (and one Cholesky factorization per alpha).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["LinearFit", "cv_logistic", "cv_ridge", "fit_logistic", "fit_ridge", "kfold"]


@dataclass
class LinearFit:
    """A fitted linear model in the units of the raw features.

    Attributes:
        coef: ``(unit,)`` for binary logistic or ridge, ``(class, unit)`` for multinomial.
        intercept: scalar or ``(class,)``.
        classes: the class values (logistic), else ``None``.
    """

    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray | None = None

    def decision(self, x: np.ndarray) -> np.ndarray:
        """``x @ coef.T + intercept``: logits (logistic) or predictions (ridge)."""
        return np.asarray(x, np.float64) @ self.coef.T + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class predictions (logistic) or values (ridge)."""
        z = self.decision(x)
        if self.classes is None:
            return z
        if z.ndim == 1:
            return self.classes[(z > 0).astype(int)]
        return self.classes[z.argmax(1)]


def kfold(n: int, folds: int, seed: int = 0, y: np.ndarray | None = None) -> np.ndarray:
    """A fold number per row: shuffled, stratified by ``y`` when given (like ``StratifiedKFold``).

    Returns:
        ``(row,)`` int array with values in ``[0, folds)``.
    """
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=np.int64)
    groups = [np.arange(n)] if y is None else [np.flatnonzero(y == c) for c in np.unique(y)]
    offset = 0
    for g in groups:
        g = rng.permutation(g)
        fold[g] = (np.arange(len(g)) + offset) % folds
        offset += len(g)
    return fold


def _scales(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Per-fold mean and std of ``x`` over the rows weighted by ``w`` (row, fold)."""
    n = w.sum(0)  # (fold,)
    mean = (w.T @ x) / n[:, None]  # (fold, unit)
    var = (w.T @ (x * x)) / n[:, None] - mean * mean
    std = var.clamp_min(0).sqrt()
    std = torch.where(std > 1e-12 * (1 + mean.abs()), std, torch.ones_like(std))
    return mean, std


def _logistic_block(
    x: Tensor,
    y: Tensor,
    train: Tensor,
    c_grid: list[float],
    n_classes: int,
    max_iter: int,
    tol: float,
    sample_weight: Tensor | None = None,
) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Fit one logistic model per fold column of ``train`` (row, fold), for each C in order.

    Returns per C: ``(coef (fold, unit, k), intercept (fold, k), mean, std)`` on standardized
    features, with ``k = 1`` for two classes.
    """
    n, d = x.shape
    f = train.shape[1]
    k = 1 if n_classes == 2 else n_classes
    w_rows = train.to(x.dtype)
    if sample_weight is not None:
        w_rows = w_rows * sample_weight[:, None]
    mean, std = _scales(x, train.to(x.dtype))
    coef = torch.zeros(f, d, k, dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(f, k, dtype=x.dtype, device=x.device, requires_grad=True)
    n_train = train.sum(0).to(x.dtype)  # (fold,)
    if k == 1:
        sign = (y == 1).to(x.dtype) * 2 - 1  # (row,)
    else:
        onehot = torch.nn.functional.one_hot(y, k).to(x.dtype)
    out = []
    for c in c_grid:
        opt = torch.optim.LBFGS(
            [coef, bias],
            lr=1,
            max_iter=max_iter,
            tolerance_grad=tol,
            tolerance_change=tol * 1e-4,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure(c: float = c, opt: torch.optim.LBFGS = opt) -> Tensor:
            opt.zero_grad()
            v = coef / std[:, :, None]  # (fold, unit, k)
            off = bias - torch.einsum("fd,fdk->fk", mean, v)
            z = (x @ v.permute(1, 0, 2).reshape(d, f * k)).reshape(n, f, k) + off
            if k == 1:
                loss_rows = torch.nn.functional.softplus(-sign[:, None] * z[..., 0])
            else:
                loss_rows = -(torch.log_softmax(z, -1) * onehot[:, None, :]).sum(-1)
            data = (loss_rows * w_rows).sum(0)  # (fold,)
            obj = ((data + 0.5 / c * (coef * coef).sum((1, 2))) / n_train).sum()
            obj.backward()
            return obj

        opt.step(closure)
        out.append((coef.detach().clone(), bias.detach().clone(), mean, std))
    return out


def _to_tensor(x: np.ndarray, dtype: torch.dtype, device: str | torch.device | None) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), device=device).to(dtype)


def _classes(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, codes = np.unique(y, return_inverse=True)
    return classes, codes


def cv_logistic(
    x: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    c_grid: list[float],
    *,
    max_iter: int = 100,
    tol: float = 1e-5,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Cross-validated accuracy of L2 logistic regression for each ``C``.

    Args:
        x: ``(row, unit)`` features. y: ``(row,)`` class labels (two or more classes).
        fold: ``(row,)`` fold of each row (see :func:`kfold`): fold ``j`` is validated by the
            model trained on all other rows.
        c_grid: inverse regularization strengths (scikit-learn's ``C``).
        max_iter, tol: L-BFGS iterations per ``C`` and tolerance on the largest gradient entry
            of the objective divided by the training rows (scikit-learn's ``tol`` is alike).
        dtype, device: where to compute.

    Returns:
        ``(C, fold)`` accuracy on each fold's held-out rows.
    """
    classes, codes = _classes(y)
    folds = np.unique(fold)
    xt = _to_tensor(x, dtype, device)
    yt = torch.as_tensor(codes, device=xt.device)
    ft = torch.as_tensor(fold, device=xt.device)
    train = torch.stack([ft != j for j in folds.tolist()], 1)
    order = np.argsort(c_grid)
    fits = _logistic_block(xt, yt, train, [c_grid[i] for i in order], len(classes), max_iter, tol)
    acc = np.empty((len(c_grid), len(folds)))
    with torch.no_grad():
        for i, (coef, bias, mean, std) in zip(order, fits, strict=True):
            for j in range(len(folds)):
                val = ~train[:, j]
                z = ((xt[val] - mean[j]) / std[j]) @ coef[j] + bias[j]
                pred = (z[:, 0] > 0).long() if z.shape[1] == 1 else z.argmax(1)
                acc[i, j] = (pred == yt[val]).double().mean().item()
    return acc


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    c: float,
    *,
    sample_weight: np.ndarray | None = None,
    max_iter: int = 300,
    tol: float = 1e-5,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> LinearFit:
    """Fit L2 logistic regression on all rows (standardized inside; returned in raw units).

    Args:
        x: ``(row, unit)``. y: ``(row,)`` labels. c: inverse regularization strength.
        sample_weight: ``(row,)`` weights of the rows' losses (scikit-learn's ``sample_weight``).

    Returns:
        A :class:`LinearFit`.
    """
    classes, codes = _classes(y)
    if len(classes) < 2:
        from neuronatlas.concepts._common import ConceptError

        raise ConceptError(
            f"A logistic probe needs two classes or more; the labels hold {classes}."
        )
    xt = _to_tensor(x, dtype, device)
    yt = torch.as_tensor(codes, device=xt.device)
    train = torch.ones(len(xt), 1, dtype=torch.bool, device=xt.device)
    sw = None if sample_weight is None else _to_tensor(sample_weight, dtype, xt.device)
    ((coef, bias, mean, std),) = _logistic_block(
        xt, yt, train, [c], len(classes), max_iter, tol, sw
    )
    v = (coef[0] / std[0][:, None]).double()  # (unit, k)
    b = bias[0].double() - mean[0].double() @ v
    if v.shape[1] == 1:
        return LinearFit(v[:, 0].cpu().numpy(), b[0].cpu().numpy(), classes)
    return LinearFit(v.T.cpu().numpy(), b.cpu().numpy(), classes)


def _ridge_fold(
    xt: Tensor, yt: Tensor, tr: Tensor, alphas: list[float]
) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """Standardize on the rows ``tr``; solve ``(XᵀX + αI) w = Xᵀ(y - ȳ)`` for every alpha.

    One Gram matrix per fold, one Cholesky factorization per alpha (LU where Cholesky fails).
    """
    mean, std = _scales(xt, tr[:, None].to(xt.dtype))
    xs = (xt[tr] - mean[0]) / std[0]
    ym = yt[tr].mean()
    gram = xs.T @ xs
    rhs = (xs.T @ (yt[tr] - ym))[:, None]
    eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    coefs = []
    for a in alphas:
        reg = gram + a * eye
        chol, info = torch.linalg.cholesky_ex(reg)
        if int(info) == 0:
            coefs.append(torch.cholesky_solve(rhs, chol)[:, 0])
        else:
            coefs.append(torch.linalg.solve(reg, rhs)[:, 0])
    return mean[0], std[0], ym, coefs


def cv_ridge(
    x: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    alphas: list[float],
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Cross-validated R² of ridge regression for each ``alpha``.

    Returns:
        ``(alpha, fold)`` R² (scikit-learn's ``r2_score``) on each fold's held-out rows.
    """
    xt = _to_tensor(x, dtype, device)
    yt = _to_tensor(y, dtype, xt.device)
    ft = torch.as_tensor(fold, device=xt.device)
    folds = np.unique(fold)
    r2 = np.empty((len(alphas), len(folds)))
    for j, fj in enumerate(folds.tolist()):
        tr = ft != fj
        mean, std, ym, coefs = _ridge_fold(xt, yt, tr, alphas)
        xv = (xt[~tr] - mean) / std
        yv = yt[~tr]
        ss_tot = ((yv - yv.mean()) ** 2).sum()
        for i, w in enumerate(coefs):
            ss_res = ((yv - xv @ w - ym) ** 2).sum()
            r2[i, j] = (1 - ss_res / ss_tot).item() if ss_tot > 0 else float("nan")
    return r2


def fit_ridge(
    x: np.ndarray,
    y: np.ndarray,
    alpha: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
) -> LinearFit:
    """Fit ridge regression on all rows (standardized inside; returned in raw units)."""
    xt = _to_tensor(x, dtype, device)
    yt = _to_tensor(y, dtype, xt.device)
    tr = torch.ones(len(xt), dtype=torch.bool, device=xt.device)
    mean, std, ym, (w,) = _ridge_fold(xt, yt, tr, [alpha])
    v = (w / std).double()
    return LinearFit(v.cpu().numpy(), (ym.double() - mean.double() @ v).cpu().numpy())
