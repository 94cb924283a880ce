"""Shape metrics: distances between representations up to rotation, with regularized whitening.

Williams, Kunz, Kornblith & Linderman, "Generalized Shape Metrics on Neural Representations"
(2021). Each ``(stimulus, unit)`` representation is centered (column means removed), partially
whitened with ``α ∈ [0, 1]`` and zero-padded to a common width; the distance is the smallest
distance over orthogonal transforms ``Q`` of one onto the other:

- partial whitening: ``X ← X Z_α``, ``Z_α = V diag(α + (1-α) λ^{-1/2}) Vᵀ`` from the
  eigendecomposition ``XᵀX = V diag(λ) Vᵀ`` (``λ`` floored at 1e-7), rescaled so the total
  variance is unchanged. ``α = 1``: no whitening (Procrustes); ``α = 0``: full whitening
  (the distance then depends only on the canonical correlations, CCA-like). Same as netrep's
  ``LinearMetric(alpha, center_columns=True)``.
- ``angular``: ``θ = arccos(‖XᵀY‖_* / (‖X‖_F ‖Y‖_F))`` (nuclear norm = ``max_Q tr(QᵀXᵀY)``);
- ``euclidean``: ``min_Q ‖XQ - Y‖_F = sqrt(‖X‖² + ‖Y‖² - 2‖XᵀY‖_*)``.

Both are metrics (symmetric, triangle inequality) on representations modulo the nuisance
transforms. The optimal ``Q`` is ``U Vᵀ`` from ``XᵀY = U S Vᵀ`` (Schönemann, 1966) — what
``scipy.linalg.orthogonal_procrustes`` returns.

Stochastic shape metrics — Duong, Zhou, Nassar, Berman, Olieslagers & Williams,
"Representational dissimilarity metric spaces for stochastic neural networks" (2022): each
stimulus evokes a distribution (repeated trials, dropout samples), summarized by its mean
``μ_i`` and covariance ``Σ_i``; the Gaussian stochastic shape distance is

    d² = min_Q (1/n) Σ_i [(2-α) ‖μ_i - Q μ'_i‖² + α B²(Σ_i, Q Σ'_i Qᵀ)],  α ∈ [0, 2],

with ``B`` the Bures distance (``B²(A, B) = min_U ‖A^{1/2} - B^{1/2} U‖²_F``); ``α = 1`` is the
2-Wasserstein distance between the Gaussians, ``α = 0`` compares means only, ``α = 2``
covariances only. The minimization alternates closed-form Procrustes steps for ``Q`` and the
``U_i`` (each step lowers the objective) for ``n_iter`` steps or until the objective changes by
less than ``tol`` (relative), from several starts (``Q`` aligning the means, the identity and
``n_restarts`` random rotations); the smallest value is returned, an upper bound of the
global minimum that restarts make tight in practice.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from neuronatlas.compare._validate import CompareError, as_matrix, check_pair

__all__ = [
    "orthogonal_procrustes",
    "partial_whiten",
    "shape_distance",
    "stochastic_shape_distance",
]

EIG_FLOOR = 1e-7


def partial_whiten(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``X Z_α`` (see the module docstring); ``x`` centered already, float64."""
    if not 0 <= alpha <= 1:
        raise CompareError(f"alpha must be in [0, 1]; got {alpha!r}.")
    if alpha > 1 - EIG_FLOOR:
        return x
    lam, v = torch.linalg.eigh(x.T @ x)
    lam = lam.clamp_min(EIG_FLOOR)
    d = alpha + (1 - alpha) * lam.rsqrt()
    new_var = (alpha**2 * lam + 2 * alpha * (1 - alpha) * lam.sqrt() + (1 - alpha) ** 2).sum()
    d = d * torch.sqrt(lam.sum() / new_var)
    return x @ ((v * d[None, :]) @ v.T)


def _prepare(x: torch.Tensor, alpha: float, width: int) -> torch.Tensor:
    x = x - x.mean(0, keepdim=True)
    x = partial_whiten(x, alpha)
    if x.shape[1] < width:
        x = torch.nn.functional.pad(x, (0, width - x.shape[1]))
    return x


def orthogonal_procrustes(x: Any, y: Any) -> torch.Tensor:
    """The orthogonal ``Q`` minimizing ``‖XQ - Y‖_F`` (``U Vᵀ`` of the SVD of ``XᵀY``)."""
    a, b = check_pair(x, y)
    if a.shape[1] != b.shape[1]:
        raise CompareError(
            f"orthogonal_procrustes needs equal widths; got {a.shape[1]} and {b.shape[1]} "
            "(shape_distance zero-pads for you)."
        )
    u, _, vh = torch.linalg.svd(a.T @ b)
    return u @ vh


def shape_distance(
    x: Any,
    y: Any,
    *,
    alpha: float = 1.0,
    score: Literal["angular", "euclidean"] = "angular",
) -> torch.Tensor:
    """Generalized shape distance between two representations of the same stimuli.

    Args:
        x, y: ``(stimulus, unit)``; widths may differ (the narrower is zero-padded).
        alpha: whitening regularization in ``[0, 1]`` (1 = Procrustes, 0 = CCA-like).
        score: ``"angular"`` (radians, in ``[0, π/2]``) or ``"euclidean"``.

    Returns:
        0-d float64 tensor (0 = the same shape).

    Examples:
        >>> import torch
        >>> x = torch.randn(30, 4, dtype=torch.float64)
        >>> q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
        >>> round(float(shape_distance(x, x @ q + 1.0)), 6)
        0.0
    """
    if score not in ("angular", "euclidean"):
        raise CompareError(f"score must be 'angular' or 'euclidean'; got {score!r}.")
    a, b = check_pair(x, y)
    width = max(a.shape[1], b.shape[1])
    a, b = _prepare(a, alpha, width), _prepare(b, alpha, width)
    nuc = torch.linalg.svdvals(a.T @ b).sum()
    na, nb = a.norm(), b.norm()
    if score == "euclidean":
        return torch.sqrt((na**2 + nb**2 - 2 * nuc).clamp_min(0))
    if not bool(na > 0 and nb > 0):
        raise CompareError("A representation is constant across stimuli; its angle is undefined.")
    return torch.arccos((nuc / (na * nb)).clamp(-1.0, 1.0))


def _sqrtm_psd(c: torch.Tensor) -> torch.Tensor:
    lam, v = torch.linalg.eigh(c)
    return (v * lam.clamp_min(0).sqrt()[..., None, :]) @ v.transpose(-1, -2)


def _moments(x: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 3 or t.shape[0] < 2:
        raise CompareError(
            f"{name} must be (repeat, stimulus, unit) samples with at least 2 repeats; got shape "
            f"{tuple(t.shape)}."
        )
    t = as_matrix(t.reshape(-1, t.shape[-1]), name).reshape(t.shape)
    mu = t.mean(0)
    dev = t - mu
    cov = torch.einsum("rsi,rsj->sij", dev, dev) / (t.shape[0] - 1)
    return mu, cov


def stochastic_shape_distance(
    x: Any,
    y: Any,
    *,
    alpha: float = 1.0,
    n_iter: int = 500,
    tol: float = 1e-12,
    n_restarts: int = 8,
) -> torch.Tensor:
    """Gaussian stochastic shape distance (Duong et al. 2022) between noisy representations.

    Args:
        x, y: ``(repeat, stimulus, unit)`` samples (trials, or samples of a stochastic network);
            the same stimuli, any numbers of repeats; widths may differ (zero-padded).
            Means are centered across stimuli. Memory is ``stimulus · unit²`` (reduce wide
            representations with PCA first).
        alpha: in ``[0, 2]``: 0 = means only, 1 = 2-Wasserstein, 2 = covariances only.
        n_iter, tol: alternating minimization steps and relative stopping tolerance.
        n_restarts: random orthogonal starting points tried besides the mean-aligning one and
            the identity (the objective is not convex in Q; the smallest local minimum wins).

    Returns:
        0-d float64 tensor ``d`` (see the module docstring).
    """
    if not 0 <= alpha <= 2:
        raise CompareError(f"alpha must be in [0, 2]; got {alpha!r}.")
    mx, cx = _moments(x, "x")
    my, cy = _moments(y, "y")
    if mx.shape[0] != my.shape[0]:
        raise CompareError(
            f"x and y must hold the same stimuli; got {mx.shape[0]} and {my.shape[0]}."
        )
    p = max(mx.shape[1], my.shape[1])
    pad1 = lambda m: torch.nn.functional.pad(m, (0, p - m.shape[-1]))  # noqa: E731
    pad2 = lambda c: torch.nn.functional.pad(c, (0, p - c.shape[-1], 0, p - c.shape[-2]))  # noqa: E731
    mx, my = pad1(mx - mx.mean(0)), pad1(my - my.mean(0).to(mx))
    sx, sy = _sqrtm_psd(pad2(cx)), _sqrtm_psd(pad2(cy.to(cx)))
    n = mx.shape[0]
    wm, wc = 2.0 - alpha, float(alpha)

    def objective(q: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        mean_term = ((mx - my @ q.T) ** 2).sum()
        cov_term = ((sx - q @ sy @ u) ** 2).sum()
        return (wm * mean_term + wc * cov_term) / n

    def descend(q: torch.Tensor) -> torch.Tensor:
        u = torch.eye(p, dtype=mx.dtype, device=mx.device).expand(n, p, p).clone()
        prev = objective(q, u)
        for _ in range(int(n_iter)):
            if wc > 0:  # U_i: Procrustes of (Q S'_i) onto S_i
                a, _, bh = torch.linalg.svd((q @ sy).transpose(-1, -2) @ sx)
                u = a @ bh
            # Q: Procrustes of the stacked means and rotated covariance roots
            m = wm * (mx.T @ my) + wc * (sx @ (sy @ u).transpose(-1, -2)).sum(0)
            a2, _, bh2 = torch.linalg.svd(m)
            q = a2 @ bh2
            cur = objective(q, u)
            done = abs(float(prev - cur)) <= tol * max(float(cur), 1e-300)
            prev = cur
            if done:
                break
        return prev

    # starts: Q aligning the means (Q μ'_i ≈ μ_i), the identity, and random orthogonal matrices
    u_, _, vh_ = torch.linalg.svd(mx.T @ my)
    starts = [u_ @ vh_, torch.eye(p, dtype=mx.dtype, device=mx.device)]
    g = torch.Generator().manual_seed(0)
    for _ in range(int(n_restarts)):
        qr, r = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))
        starts.append((qr * torch.sign(torch.diagonal(r))).to(mx))
    best = min(float(descend(q)) for q in starts)
    return torch.tensor(max(best, 0.0), dtype=torch.float64).sqrt()
