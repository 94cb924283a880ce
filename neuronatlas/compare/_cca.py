"""Canonical correlation analysis (CCA) and SVCCA between two representations.

- CCA (Hotelling, "Relations between two sets of variates", 1936): the canonical correlations
  ``ρ_1 ≥ ρ_2 ≥ …`` are the singular values of ``Q_Xᵀ Q_Y`` with ``Q`` orthonormal bases of the
  centered representations' column spaces (Björck & Golub, 1973), i.e. the square roots of the
  eigenvalues of ``Σ_XX⁻¹ Σ_XY Σ_YY⁻¹ Σ_YX``. There are ``min(rank X, rank Y)`` of them; a base
  keeps the directions whose singular value exceeds ``eps · s_max``.
- SVCCA — Raghu, Gilmer, Yosinski & Sohl-Dickstein, "SVCCA: Singular Vector Canonical
  Correlation Analysis for Deep Learning Dynamics and Interpretability" (2017): each
  representation is first reduced to its top singular directions (the fewest that keep
  ``keep`` = 99% of the variance, or ``keep`` directions when it is an int), then CCA; the
  similarity is the mean canonical correlation ``ρ̄``.
"""

from __future__ import annotations

from typing import Any

import torch

from neuronatlas.compare._validate import CompareError, check_pair

__all__ = ["canonical_correlations", "svcca", "svd_reduce"]


def _basis(x: torch.Tensor, eps: float) -> torch.Tensor:
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    if not bool(s.numel() and s[0] > 0):
        raise CompareError("A representation is constant across stimuli; CCA is undefined.")
    return u[:, s > eps * s[0]]


def canonical_correlations(x: Any, y: Any, *, eps: float = 1e-10) -> torch.Tensor:
    """The canonical correlations of two representations of the same stimuli, descending.

    Args:
        x, y: ``(stimulus, unit)``. eps: relative rank cut-off of the bases.

    Returns:
        ``(min(rank X, rank Y),)`` float64 in ``[0, 1]``.
    """
    a, b = check_pair(x, y)
    a, b = a - a.mean(0), b - b.mean(0)
    rho = torch.linalg.svdvals(_basis(a, eps).T @ _basis(b, eps))
    return rho.clamp(0.0, 1.0)


def svd_reduce(x: torch.Tensor, keep: float | int = 0.99) -> torch.Tensor:
    """Project centered ``x`` on its top singular directions (SVCCA's first step).

    Args:
        x: ``(stimulus, unit)`` float64.
        keep: a fraction in (0, 1] of the variance to keep (the fewest directions reaching it),
            or an int number of directions.
    """
    x = x - x.mean(0)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    if isinstance(keep, bool) or not (
        (isinstance(keep, int) and keep >= 1) or (isinstance(keep, float) and 0 < keep <= 1)
    ):
        raise CompareError(
            f"keep must be a variance fraction in (0, 1] or a number of directions ≥ 1; got "
            f"{keep!r}."
        )
    if isinstance(keep, int):
        k = min(keep, s.numel())
    else:
        var = s**2
        frac = torch.cumsum(var, 0) / var.sum()
        k = int(torch.searchsorted(frac, torch.tensor(keep, dtype=frac.dtype) - 1e-12)) + 1
        k = min(k, s.numel())
    return u[:, :k] * s[:k]


def svcca(x: Any, y: Any, *, keep: float | int = 0.99) -> torch.Tensor:
    """SVCCA similarity: mean canonical correlation after SVD reduction (Raghu et al. 2017).

    Examples:
        >>> import torch
        >>> x = torch.randn(100, 10, dtype=torch.float64)
        >>> round(float(svcca(x, x @ torch.randn(10, 10, dtype=torch.float64))), 6)
        1.0
    """
    a, b = check_pair(x, y)
    return canonical_correlations(svd_reduce(a, keep), svd_reduce(b, keep)).mean()
