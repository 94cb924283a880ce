"""Concept decompositions of activations: NMF (scikit-learn or torch), PCA and k-means.

Each decomposition factorizes activation rows ``A ≈ S P`` with ``A`` ``(row, unit)``, concept
scores ``S`` ``(row, concept)`` and concept vectors ``P`` ``(concept, unit)``, and has
``fit``, ``transform`` (scores of new rows) and ``inverse_transform`` (rows from scores), as in
"Invertible Concept-based Explanations for CNN Models with Non-negative Concept Activation
Vectors" (Zhang, Madumal, Miller, Ehinger & Rubinstein, 2021), which compares:

- ``nmf``: non-negative matrix factorization, ``min ||A - S P||_F^2`` with ``S, P ≥ 0``
  (scikit-learn ``NMF``, ``init="nndsvda"``); needs ``A ≥ 0`` (activations after a ReLU);
- ``nmf-torch``: the same objective with Lee & Seung's multiplicative updates in torch
  ("Algorithms for Non-negative Matrix Factorization", 2001), full-batch or over minibatches
  (:class:`TorchNMF`), for data too large for scikit-learn or on a GPU;
- ``pca``: ``S = (A - mean) V``, ``A ≈ S P + mean`` with the top principal directions ``P``;
- ``kmeans``: ``P`` the cluster centres, ``S`` the one-hot assignment of each row to its
  nearest centre, so a row is reconstructed as its centre.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from neuronatlas._lazy import require
from neuronatlas.concepts._common import ConceptError

__all__ = [
    "DECOMPOSITIONS",
    "Decomposition",
    "KMeansConcepts",
    "TorchNMF",
    "make_decomposition",
    "nmf_objective",
]

_EPS = 1e-10


class Decomposition(Protocol):
    """What ICE needs of a decomposition."""

    components_: np.ndarray

    def fit(self, x: np.ndarray) -> Any: ...
    def transform(self, x: np.ndarray) -> np.ndarray: ...
    def inverse_transform(self, s: np.ndarray) -> np.ndarray: ...


def nmf_objective(x: np.ndarray, scores: np.ndarray, components: np.ndarray) -> float:
    """``0.5 * ||x - scores @ components||_F^2`` (scikit-learn's NMF objective, no penalty)."""
    r = np.asarray(x, np.float64) - np.asarray(scores, np.float64) @ np.asarray(
        components, np.float64
    )
    return 0.5 * float((r * r).sum())


class TorchNMF:
    """NMF by multiplicative updates in torch, full-batch or minibatch.

    Full batch (``batch_size=None``) alternates Lee & Seung's updates on all rows:
    ``S ← S ⊙ (A Pᵀ) / (S P Pᵀ)``, ``P ← P ⊙ (Sᵀ A) / (Sᵀ S P)``. With ``batch_size``, each
    minibatch's scores are solved with ``P`` fixed (``inner`` updates), and ``P`` takes ``inner_components``
    multiplicative steps on running sums ``Sᵀ A`` and ``Sᵀ S`` decayed by ``forget`` per batch
    (an online MU in the style of scikit-learn's ``MiniBatchNMF``); :meth:`fit_batches` takes
    any iterable of ``(row, unit)`` batches, such as ``ActivationStore.minibatches``.

    Args:
        n_components: concepts. max_iter: full-batch iterations (or epochs over an array).
        batch_size: rows per minibatch (``None``: full batch). inner: score updates per batch.
            inner_components: concept-vector updates per batch.
        forget: decay of the running sums per batch. seed: initialization.
        device, dtype: where to compute.

    Attributes:
        components_: ``(concept, unit)`` non-negative concept vectors.
    """

    def __init__(
        self,
        n_components: int,
        *,
        max_iter: int = 200,
        batch_size: int | None = None,
        inner: int = 100,
        inner_components: int = 5,
        forget: float = 0.5,
        seed: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.n_components = n_components
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.inner = inner
        self.inner_components = inner_components
        self.forget = forget
        self.seed = seed
        self.device = device
        self.dtype = dtype

    def _t(self, x: Any) -> Tensor:
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
        t = t.to(device=self.device, dtype=self.dtype)
        if (t < 0).any():
            raise ConceptError(
                f"NMF needs non-negative activations; got a minimum of {t.min().item():.4g}. "
                "Use a site after a ReLU, or clip the activations at 0."
            )
        return t

    def _init(self, x: Tensor) -> Tensor:
        g = torch.Generator(device="cpu").manual_seed(self.seed)
        scale = float((x.mean() / self.n_components).clamp_min(_EPS).sqrt())
        p = torch.rand(self.n_components, x.shape[1], generator=g, dtype=torch.float64) * scale
        return p.to(device=x.device, dtype=x.dtype)

    def _scores(self, x: Tensor, p: Tensor, iters: int) -> Tensor:
        g = torch.Generator(device="cpu").manual_seed(self.seed + 1)
        scale = float((x.mean() / self.n_components).clamp_min(_EPS).sqrt())
        s = (torch.rand(len(x), self.n_components, generator=g, dtype=torch.float64) * scale).to(
            device=x.device, dtype=x.dtype
        )
        xp, pp = x @ p.T, p @ p.T
        for _ in range(iters):
            s = s * xp / (s @ pp).clamp_min(_EPS)
        return s

    def fit(
        self, x: np.ndarray | Tensor, init: tuple[np.ndarray, np.ndarray] | None = None
    ) -> TorchNMF:
        """Fit on ``(row, unit)`` non-negative rows (minibatched if ``batch_size``).

        Args:
            x: the rows.
            init: full batch only: initial ``(scores, components)`` (default: uniform random
                scaled by ``sqrt(mean(x) / n_components)``, scikit-learn's ``init="random"``).
        """
        xt = self._t(x)
        if self.batch_size is not None:
            g = torch.Generator(device="cpu").manual_seed(self.seed + 2)

            def batches() -> Iterable[Tensor]:
                for _ in range(self.max_iter):
                    order = torch.randperm(len(xt), generator=g).to(xt.device)
                    for b in range(0, len(xt), self.batch_size):  # type: ignore[arg-type]
                        yield xt[order[b : b + self.batch_size]]

            return self.fit_batches(batches(), init=xt[: 4 * self.batch_size])
        if init is None:
            p = self._init(xt)
            s = self._scores(xt, p, 0)
        else:
            s, p = (self._t(v) for v in init)
        for _ in range(self.max_iter):
            s = s * (xt @ p.T) / (s @ (p @ p.T)).clamp_min(_EPS)
            p = p * (s.T @ xt) / ((s.T @ s) @ p).clamp_min(_EPS)
        self._set(p)
        self.reconstruction_err_ = float(torch.linalg.norm(xt - s @ p))
        return self

    def fit_batches(self, batches: Iterable[Any], *, init: Any = None) -> TorchNMF:
        """Online fit over minibatches of rows (one pass over ``batches``).

        Args:
            batches: ``(row, unit)`` tensors or arrays, e.g. ``store.minibatches(site, 4096)``.
            init: rows to scale the initialization (default: the first batch).
        """
        p = a = b = None
        for batch in batches:
            x = self._t(batch)
            if p is None:
                p = self._init(self._t(init) if init is not None else x)
                a = torch.zeros(
                    self.n_components, self.n_components, dtype=x.dtype, device=x.device
                )
                b = torch.zeros_like(p)
            s = self._scores(x, p, self.inner)
            a = self.forget * a + s.T @ s
            b = self.forget * b + s.T @ x
            for _ in range(self.inner_components):
                p = p * b / (a @ p).clamp_min(_EPS)
        if p is None:
            raise ConceptError("TorchNMF.fit_batches got no batches.")
        self._set(p)
        return self

    def _set(self, p: Tensor) -> None:
        self.components_ = p.double().cpu().numpy()
        self._p = p

    def transform(self, x: np.ndarray | Tensor, iters: int = 200) -> np.ndarray:
        """Scores ``(row, concept)`` of new rows with the concepts fixed."""
        return self._scores(self._t(x), self._p, iters).double().cpu().numpy()

    def inverse_transform(self, s: np.ndarray) -> np.ndarray:
        """Rows reconstructed from scores: ``s @ components_``."""
        return np.asarray(s) @ self.components_


class KMeansConcepts:
    """k-means as a concept decomposition: one-hot scores, centres as concept vectors."""

    def __init__(self, n_components: int, *, seed: int = 0) -> None:
        self.n_components = n_components
        self.seed = seed

    def fit(self, x: np.ndarray) -> KMeansConcepts:
        cluster = require("sklearn.cluster")
        self._km = cluster.KMeans(self.n_components, n_init=4, random_state=self.seed).fit(x)
        self.components_ = self._km.cluster_centers_
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        labels = self._km.predict(np.asarray(x, self.components_.dtype))
        return np.eye(self.n_components)[labels]

    def inverse_transform(self, s: np.ndarray) -> np.ndarray:
        return np.asarray(s) @ self.components_


DECOMPOSITIONS = ("nmf", "nmf-torch", "pca", "kmeans")


def make_decomposition(
    method: str, n_concepts: int, *, seed: int = 0, **kwargs: Any
) -> Decomposition:
    """A fresh decomposition by name (``nmf``, ``nmf-torch``, ``pca``, ``kmeans``).

    Examples:
        >>> d = make_decomposition("pca", 2).fit(np.random.default_rng(0).normal(size=(50, 4)))
        >>> d.components_.shape
        (2, 4)
    """
    if not isinstance(n_concepts, int) or n_concepts < 1:
        raise ConceptError(f"n_concepts must be a positive int; got {n_concepts!r}.")
    if method == "nmf":
        dec = require("sklearn.decomposition")
        return dec.NMF(
            n_concepts,
            init="nndsvda",
            max_iter=kwargs.pop("max_iter", 1000),
            random_state=seed,
            **kwargs,
        )
    if method == "nmf-torch":
        return TorchNMF(n_concepts, seed=seed, **kwargs)
    if method == "pca":
        dec = require("sklearn.decomposition")
        return dec.PCA(n_concepts, random_state=seed, **kwargs)
    if method == "kmeans":
        return KMeansConcepts(n_concepts, seed=seed)
    raise ConceptError(f"Unknown decomposition {method!r}; choose one of {list(DECOMPOSITIONS)}.")
