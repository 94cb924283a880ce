"""Synthetic superposition data with known features, and how well an SAE recovers them.

The standard ground truth for dictionary learning ("Taking features out of superposition with
sparse autoencoders", Sharkey, Braun and Millidge, 2022): ``n_features`` random unit directions
in ``d`` dimensions (more features than dimensions); each input is a sparse non-negative
combination of them — every feature active independently with probability ``p``, with a
magnitude drawn uniformly from ``[0, 1)`` when active.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from neuronatlas.sae._base import check_float, check_int

__all__ = ["SyntheticFeatures", "mmcs"]


class SyntheticFeatures:
    """Random unit feature directions and batches of sparse combinations of them.

    Args:
        n_features: true features (1024 in the usual benchmark).
        d: input dimension (256).
        p: probability that a feature is active in an input (0.01).
        seed: seed of the directions and of the batches.

    Attributes:
        features: ``(n_features, d)`` unit rows.

    Examples:
        >>> data = SyntheticFeatures(n_features=64, d=16, p=0.05, seed=0)
        >>> data.batch(8).shape
        torch.Size([8, 16])
    """

    def __init__(self, n_features: int = 1024, d: int = 256, p: float = 0.01, seed: int = 0):
        self.n_features = check_int(n_features, "n_features", "SyntheticFeatures")
        self.d = check_int(d, "d", "SyntheticFeatures")
        self.p = check_float(p, "p", "SyntheticFeatures")
        # seeds derived from ("features", seed) and ("inputs", seed): independent of the plain
        # torch seeds that SAE initializations use
        seeds = np.random.SeedSequence([seed, 0x5EED]).generate_state(2, dtype=np.uint64)
        g = torch.Generator().manual_seed(int(seeds[0]) >> 1)
        f = torch.randn(self.n_features, self.d, generator=g)
        self.features = f / f.norm(dim=1, keepdim=True)
        self._gen = torch.Generator().manual_seed(int(seeds[1]) >> 1)

    def codes(self, n: int) -> Tensor:
        """``(n, n_features)`` true activations: Bernoulli(p) masks times U(0, 1) magnitudes."""
        active = torch.rand(n, self.n_features, generator=self._gen) < self.p
        return active * torch.rand(n, self.n_features, generator=self._gen)

    def batch(self, n: int) -> Tensor:
        """``(n, d)`` inputs ``codes(n) @ features``."""
        return self.codes(n) @ self.features

    def batches(self, batch_size: int, n_batches: int) -> Iterator[Tensor]:
        """``n_batches`` fresh batches (the stream continues the generator's state)."""
        for _ in range(n_batches):
            yield self.batch(batch_size)


def mmcs(learned: Tensor, true: Tensor) -> float:
    """Mean max cosine similarity of the true features to the learned directions.

    ``MMCS = (1/|F|) Σ_{f ∈ F} max_{d ∈ D} cos(f, d)`` over the true features ``F`` (rows of
    ``true``) and the learned decoder directions ``D`` (rows of ``learned``): 1 when every true
    feature has a learned direction pointing its way ("Taking features out of superposition
    with sparse autoencoders", 2022).

    Examples:
        >>> import torch
        >>> f = torch.eye(3)
        >>> mmcs(torch.cat([f, torch.ones(1, 3)]), f)
        1.0
    """
    a = learned.detach().double()
    b = true.detach().double().to(a.device)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float((b @ a.T).max(dim=1).values.mean())
