"""Token subsampling: a pure function of (doc, pos, seed), of about the asked fraction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from store._store_testutil import random_splits

from neuronatlas.errors import StoreError
from neuronatlas.store import ActivationStore, subsample_mask

MASK64 = (1 << 64) - 1


def _splitmix64_py(x: int) -> int:
    """SplitMix64 (Steele, Lea & Flood 2014) with Python ints: an independent reference."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def _keep_py(doc: int, pos: int, fraction: float, seed: int) -> bool:
    s = _splitmix64_py(seed & MASK64)
    h = _splitmix64_py(_splitmix64_py((doc & MASK64) ^ s) ^ (pos & MASK64))
    return (h >> 11) < round(fraction * 2**53)


@settings(max_examples=25, deadline=None)
@given(
    doc=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=30),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**31),
)
def test_mask_matches_python_reference(doc, fraction, seed):
    pos = [abs(d) % 5000 for d in doc]
    got = subsample_mask(np.array(doc), torch.tensor(pos), fraction, seed)
    assert got.tolist() == [_keep_py(d, p, fraction, seed) for d, p in zip(doc, pos, strict=True)]


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.9])
def test_fraction_and_independence_of_seeds(fraction):
    n = 200_000
    doc, pos = np.repeat(np.arange(n // 100), 100), np.tile(np.arange(100), n // 100)
    a = subsample_mask(doc, pos, fraction, seed=0)
    b = subsample_mask(doc, pos, fraction, seed=1)
    sigma = np.sqrt(fraction * (1 - fraction) / n)
    assert a.mean() == pytest.approx(fraction, abs=5 * sigma)
    assert b.mean() == pytest.approx(fraction, abs=5 * sigma)
    # independent seeds: P(kept by both) = fraction**2
    both_sigma = np.sqrt(fraction**2 * (1 - fraction**2) / n)
    assert (a & b).mean() == pytest.approx(fraction**2, abs=5 * both_sigma)
    # no positional bias: every position is kept about equally often across documents
    per_pos = a.reshape(-1, 100).mean(0)
    pos_sigma = np.sqrt(fraction * (1 - fraction) / (n // 100))
    assert np.abs(per_pos - fraction).max() < 5 * pos_sigma


def test_mask_is_elementwise_and_order_free():
    rng = np.random.default_rng(0)
    doc, pos = rng.integers(0, 10**6, 5000), rng.integers(0, 512, 5000)
    m = subsample_mask(doc, pos, 0.5, seed=3)
    perm = rng.permutation(5000)
    np.testing.assert_array_equal(subsample_mask(doc[perm], pos[perm], 0.5, seed=3), m[perm])
    assert subsample_mask(doc, pos, 1.0).all()
    with pytest.raises(StoreError, match="same length"):
        subsample_mask(doc, pos[:-1], 0.5)
    for bad in (0, 1.5, float("nan"), "half"):
        with pytest.raises(StoreError, match=r"keep_fraction must be a number in \(0, 1\]"):
            subsample_mask(doc, pos, bad)


@settings(max_examples=8, deadline=None)
@given(split_seed=st.integers(0, 1000))
def test_store_keeps_the_same_tokens_however_batched(tmp_path_factory, split_seed):
    n = 600
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    doc, pos = np.repeat(np.arange(n // 20), 20), np.tile(np.arange(20), n // 20)
    keep = subsample_mask(doc, pos, 0.4, seed=11)
    path = tmp_path_factory.mktemp("sub") / "s"
    store = ActivationStore.create(path, {"a": 5}, chunk_rows=32, keep_fraction=0.4, keep_seed=11)
    cuts = random_splits(n, np.random.default_rng(split_seed), max_size=90)
    kept = 0
    for a, z in itertools.pairwise(cuts):
        kept += store.append({"a": torch.from_numpy(x[a:z])}, doc[a:z], pos[a:z])
    store.close()
    assert kept == store.n_rows == keep.sum()
    np.testing.assert_array_equal(store.read("a"), x[keep])
    np.testing.assert_array_equal(store.index().column("doc").to_numpy(), doc[keep])
    np.testing.assert_array_equal(store.index().column("pos").to_numpy(), pos[keep])
