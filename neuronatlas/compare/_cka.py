"""Centered kernel alignment (CKA) with biased and debiased HSIC, and minibatch CKA.

Kornblith et al., "Similarity of Neural Network Representations Revisited" (2019):

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))

over ``n`` stimuli, with ``K`` and ``L`` the ``(stimulus, stimulus)`` Gram matrices of the two
representations: linear ``K = X Xᵀ`` or RBF ``K_ij = exp(-‖x_i - x_j‖² / (2σ²))`` with
``σ² = threshold² · median_ij ‖x_i - x_j‖²`` (median over all ``n²`` entries, diagonal included,
as in the paper's code; ``threshold`` = 1 by default).

- biased HSIC: ``tr(K H L H) / (n-1)²``, ``H = I - 11ᵀ/n``;
- debiased HSIC (unbiased estimator) — Song et al., "Feature Selection via Dependence
  Maximization" (2012): with ``K̃``, ``L̃`` the Grams with zeroed diagonals,
  ``HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2)·1ᵀK̃L̃1] / (n(n-3))``, computed as
  the inner product of the two "U-centered" Grams (Székely & Rizzo, 2014) divided by
  ``n(n-3)``; needs ``n ≥ 4``. Debiased CKA of independent representations is ≈ 0 (biased
  CKA is not, for ``p`` large relative to ``n``).
- linear CKA is invariant to orthogonal transforms and isotropic scaling of either
  representation, not to non-isotropic scaling.

Minibatch CKA — Nguyen, Raghu & Kornblith, "Do Wide and Deep Networks Learn the Same Things?"
(2021): over minibatches ``i`` of ``k`` stimuli (the same stimuli for both representations),
``CKA = mean_i HSIC₁(K_i, L_i) / sqrt(mean_i HSIC₁(K_i, K_i) · mean_i HSIC₁(L_i, L_i))`` with the
unbiased HSIC₁, so the estimate does not depend on the batch size; memory is ``k²`` per pair,
whatever the number of stimuli (tokens).

Gram matrices accumulate over feature chunks (``gram`` accepts an iterable of
``(stimulus, unit_chunk)`` blocks), all in float64.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from neuronatlas.compare._validate import CompareError, as_matrix

__all__ = ["MinibatchCKA", "center_gram", "cka", "cka_grams", "gram", "hsic"]

Kernel = Literal["linear", "rbf"]


def _sq_distances(k: torch.Tensor) -> torch.Tensor:
    d = k.diagonal()
    return (d[:, None] + d[None, :] - 2 * k).clamp_min(0)


def _median(x: torch.Tensor) -> torch.Tensor:
    """The median of all entries (mean of the two middle ones for an even count, as numpy)."""
    flat = x.flatten()
    m = flat.numel()
    lo = torch.kthvalue(flat, (m + 1) // 2).values
    if m % 2:
        return lo
    return (lo + torch.kthvalue(flat, m // 2 + 1).values) / 2


def gram(
    x: Any,
    kernel: Kernel = "linear",
    *,
    threshold: float = 1.0,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """The ``(stimulus, stimulus)`` Gram matrix of a representation, in float64.

    Args:
        x: ``(stimulus, unit)`` tensor/array, or an iterable of ``(stimulus, unit_chunk)``
            blocks of the same stimuli (the linear Gram ``Σ_c X_c X_cᵀ`` is accumulated; the
            whole representation never needs to be in memory).
        kernel: ``"linear"`` or ``"rbf"`` (bandwidth from the median distance, see the module).
        threshold: RBF bandwidth as a fraction of the median distance.
        device: where to compute (``None`` = where ``x`` is).

    Returns:
        ``(stimulus, stimulus)`` float64.
    """
    if kernel not in ("linear", "rbf"):
        raise CompareError(f"kernel must be 'linear' or 'rbf'; got {kernel!r}.")
    if isinstance(x, (torch.Tensor, np.ndarray)):
        blocks: Iterable[Any] = [x]
    else:
        blocks = x
    k = None
    for i, block in enumerate(blocks):
        b = as_matrix(block, f"x (block {i})")
        if device is not None:
            b = b.to(device)
        if k is not None and b.shape[0] != k.shape[0]:
            raise CompareError(
                f"Feature block {i} has {b.shape[0]} stimuli; earlier blocks had {k.shape[0]}. "
                "Every block must hold all stimuli (split the units, not the stimuli)."
            )
        k = b @ b.T if k is None else k.addmm_(b, b.T)
    if k is None:
        raise CompareError("x held no feature blocks.")
    if kernel == "rbf":
        if not threshold > 0:
            raise CompareError(f"threshold must be > 0; got {threshold!r}.")
        sq = _sq_distances(k)
        med = _median(sq)
        if not med > 0:
            raise CompareError(
                "The median squared distance between stimuli is 0 (most stimuli are identical); "
                "the RBF bandwidth is undefined. Use kernel='linear'."
            )
        k = torch.exp(-sq / (2 * threshold**2 * med))
    return k


def center_gram(k: torch.Tensor, *, debiased: bool = False) -> torch.Tensor:
    """Center a Gram matrix: ``H K H`` (biased) or U-centering (debiased; zero diagonal).

    U-centering (Székely & Rizzo, "Partial distance correlation with methods for dissimilarities",
    2014): ``K̃_ij - r_i - r_j`` off the diagonal, 0 on it, with ``K̃`` the zero-diagonal Gram,
    ``r_i = Σ_j K̃_ij / (n-2) - Σ K̃ / (2(n-1)(n-2))``; ``<Ũ(K), Ũ(L)> / (n(n-3))`` is Song et al.'s
    unbiased HSIC.
    """
    n = k.shape[0]
    k = k.clone()
    if debiased:
        if n < 4:
            raise CompareError(f"Debiased HSIC needs at least 4 stimuli; got {n}.")
        k.fill_diagonal_(0)
        means = k.sum(0) / (n - 2)
        means = means - means.sum() / (2 * (n - 1))
        k -= means[:, None]
        k -= means[None, :]
        k.fill_diagonal_(0)
    else:
        means = k.mean(0)
        means = means - means.mean() / 2
        k -= means[:, None]
        k -= means[None, :]
    return k


def _scale(n: int, debiased: bool) -> float:
    return float(n * (n - 3)) if debiased else float((n - 1) ** 2)


def hsic(k: torch.Tensor, l: torch.Tensor, *, debiased: bool = False) -> torch.Tensor:  # noqa: E741
    """The Hilbert-Schmidt independence criterion of two Gram matrices over the same stimuli.

    Biased: ``tr(KHLH)/(n-1)²``; debiased: Song et al. (2012), see the module docstring.
    """
    if k.shape != l.shape or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise CompareError(
            f"hsic needs two square Gram matrices of the same size; got {tuple(k.shape)} and "
            f"{tuple(l.shape)}."
        )
    n = k.shape[0]
    kc, lc = center_gram(k, debiased=debiased), center_gram(l, debiased=debiased)
    return (kc * lc).sum() / _scale(n, debiased)


def cka_grams(k: torch.Tensor, l: torch.Tensor, *, debiased: bool = False) -> torch.Tensor:  # noqa: E741
    """CKA of two Gram matrices (0-d float64 tensor); 0 when either is constant."""
    kc, lc = center_gram(k, debiased=debiased), center_gram(l, debiased=debiased)
    num = (kc * lc).sum()
    den = torch.sqrt((kc * kc).sum() * (lc * lc).sum())
    return num / den if bool(den > 0) else torch.zeros((), dtype=num.dtype, device=num.device)


def cka(
    x: Any,
    y: Any,
    *,
    kernel: Kernel = "linear",
    debiased: bool = False,
    threshold: float = 1.0,
) -> torch.Tensor:
    """CKA between two representations of the same stimuli.

    Args:
        x, y: ``(stimulus, unit)`` tensors/arrays (unit counts may differ), or iterables of
            feature blocks (see :func:`gram`).
        kernel: ``"linear"`` or ``"rbf"``. debiased: use the unbiased HSIC estimator.
        threshold: RBF bandwidth as a fraction of the median distance.

    Returns:
        0-d float64 tensor in ``[0, 1]`` (biased); debiased CKA can be slightly negative.

    Examples:
        >>> import torch
        >>> x = torch.randn(50, 8, dtype=torch.float64)
        >>> q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
        >>> round(float(cka(x, 3 * x @ q)), 10)
        1.0
    """
    k = gram(x, kernel, threshold=threshold)
    l = gram(y, kernel, threshold=threshold, device=k.device)  # noqa: E741
    if k.shape != l.shape:
        raise CompareError(
            f"x and y must hold the same stimuli; got {k.shape[0]} and {l.shape[0]} stimuli."
        )
    return cka_grams(k, l, debiased=debiased)


class MinibatchCKA:
    """Minibatch CKA between every pair of two lists of representations, streaming.

    Nguyen, Raghu & Kornblith, "Do Wide and Deep Networks Learn the Same Things?" (2021): feed
    minibatches of the same stimuli (or tokens) for all representations with :meth:`update`;
    :meth:`result` gives the ``(len(a), len(b))`` CKA matrix from the summed unbiased HSIC₁
    values (linear kernel). Memory: one ``k × k`` Gram per representation of a minibatch.

    Examples:
        >>> import torch
        >>> mb = MinibatchCKA(n_a=2, n_b=1)
        >>> for _ in range(3):
        ...     x = torch.randn(32, 5, dtype=torch.float64)
        ...     _ = mb.update([x, torch.randn(32, 4, dtype=torch.float64)], [2 * x])
        >>> round(float(mb.result()[0, 0]), 6)
        1.0
    """

    def __init__(self, n_a: int, n_b: int) -> None:
        self.n_a, self.n_b = int(n_a), int(n_b)
        self.cross_ = torch.zeros(self.n_a, self.n_b, dtype=torch.float64)
        self.self_a_ = torch.zeros(self.n_a, dtype=torch.float64)
        self.self_b_ = torch.zeros(self.n_b, dtype=torch.float64)
        self.n_batches_ = 0

    def update(self, a: Sequence[Any], b: Sequence[Any]) -> MinibatchCKA:
        """Add one minibatch: ``a[i]``, ``b[j]`` are ``(batch, unit)`` over the same stimuli."""
        if len(a) != self.n_a or len(b) != self.n_b:
            raise CompareError(
                f"Expected {self.n_a} and {self.n_b} representations per minibatch; got "
                f"{len(a)} and {len(b)}."
            )
        ua = [center_gram(gram(x), debiased=True) for x in a]
        ub = [center_gram(gram(y, device=ua[0].device), debiased=True) for y in b]
        sizes = {u.shape[0] for u in [*ua, *ub]}
        if len(sizes) != 1:
            raise CompareError(
                f"All representations of a minibatch need the same stimuli; got sizes {sorted(sizes)}."
            )
        n = sizes.pop()
        s = _scale(n, True)
        fa = torch.stack([u.flatten() for u in ua])
        fb = torch.stack([u.flatten() for u in ub])
        self.cross_ += (fa @ fb.T).cpu() / s
        self.self_a_ += (fa * fa).sum(1).cpu() / s
        self.self_b_ += (fb * fb).sum(1).cpu() / s
        self.n_batches_ += 1
        return self

    def result(self) -> torch.Tensor:
        """``(n_a, n_b)`` minibatch CKA (float64)."""
        if not self.n_batches_:
            raise CompareError("MinibatchCKA.result() before any update().")
        den = torch.sqrt(self.self_a_[:, None] * self.self_b_[None, :])
        return torch.where(den > 0, self.cross_ / torch.where(den > 0, den, 1.0), 0.0)
