"""Helpers for the activation store tests: reference data and independent dtype references.

Imported as ``store._store_testutil`` (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import itertools

import numpy as np
import torch


def bf16_reference(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (round to nearest even) -> float32, by bit arithmetic in numpy."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return (rounded.astype(np.uint32) << 16).view(np.float32)


def stored_reference(x: np.ndarray, dtype: str) -> np.ndarray:
    """What ``ActivationStore.read`` must return for float32 rows ``x`` stored as ``dtype``."""
    if dtype == "float32":
        return x.astype(np.float32)
    if dtype == "float16":
        return x.astype(np.float16)
    return bf16_reference(x)


def random_splits(n: int, rng: np.random.Generator, max_size: int = 150) -> list[int]:
    """Batch boundaries ``[0, ..., n]`` with random sizes (empty batches included)."""
    cuts = [0]
    while cuts[-1] < n:
        cuts.append(min(n, cuts[-1] + int(rng.integers(0, max_size))))
    return cuts


def fill_store(store, data: dict[str, np.ndarray], doc, pos, token_id, rng, commit=True) -> None:
    """Append ``data`` in random batches (as torch tensors), committing after each batch."""
    n = len(doc)
    cuts = random_splits(n, rng)
    for b, (a, z) in enumerate(itertools.pairwise(cuts)):
        store.append(
            {k: torch.from_numpy(v[a:z]) for k, v in data.items()},
            doc[a:z],
            pos[a:z],
            None if token_id is None else token_id[a:z],
        )
        if commit:
            store.commit({"batches_done": b + 1})
