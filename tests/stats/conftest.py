"""Helpers for the statistics tests: random batches with padding, and numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronatlas.stats import SiteBatch


def random_batches(
    n_batches: int,
    n_units: int,
    *,
    rows: int = 3,
    n_pos: int = 16,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    pad: float = 0.25,
    gen=None,
) -> list[SiteBatch]:
    """Batches of right-padded rows; ``gen(rng, shape) -> np.ndarray`` makes the values."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_batches):
        shape = (rows, n_pos, n_units)
        values = gen(rng, shape) if gen is not None else rng.standard_normal(shape)
        lengths = rng.integers(1, n_pos + 1, size=rows) if pad else np.full(rows, n_pos)
        mask = np.arange(n_pos)[None, :] < lengths[:, None]
        doc = np.broadcast_to(np.arange(rows)[:, None] + i * rows, (rows, n_pos))
        pos = np.broadcast_to(np.arange(n_pos)[None, :], (rows, n_pos))
        out.append(
            SiteBatch(
                torch.as_tensor(values, dtype=dtype),
                torch.as_tensor(mask),
                torch.as_tensor(doc.copy()),
                torch.as_tensor(pos.copy()),
            )
        )
    return out


def stacked(batches: list[SiteBatch]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All valid values ``(N, unit)`` as float64, with their doc and pos ``(N,)``."""
    vals = np.concatenate([b.flat.double().numpy() for b in batches])
    docs = np.concatenate([b.flat_doc.numpy() for b in batches])
    poss = np.concatenate([b.flat_pos.numpy() for b in batches])
    return vals, docs, poss


def rank_error(sorted_values: np.ndarray, estimate: float, q: float) -> float:
    """Tie-aware rank error: the distance from q to [F(estimate-), F(estimate)]."""
    n = len(sorted_values)
    below = np.searchsorted(sorted_values, estimate, side="left") / n
    upto = np.searchsorted(sorted_values, estimate, side="right") / n
    return max(0.0, below - q, q - upto)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
