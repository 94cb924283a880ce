"""The sketches: hashing, bucket sums, magnitude histogram and the tie-exact top rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronatlas.units._sketch import (
    abs_histogram,
    best_rows,
    bucket_sum,
    hash_buckets,
    hash_multipliers,
    histogram_median,
)


def test_hash_buckets_are_in_range_deterministic_and_spread():
    keys = torch.arange(100_000, dtype=torch.int64) * 7919 + (5 << 32)
    mult = hash_multipliers(3, seed=2)
    b = hash_buckets(keys, mult, bits=9)
    assert b.shape == (3, 100_000) and int(b.min()) >= 0 and int(b.max()) < 512
    assert torch.equal(b, hash_buckets(keys, hash_multipliers(3, seed=2), bits=9))
    counts = torch.stack([torch.bincount(r, minlength=512) for r in b]).double()
    # near-uniform: every bucket within 30% of the mean load (about 195 keys)
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()


@pytest.mark.parametrize(("n", "n_buckets"), [(300, 1), (300, 64), (4000, 1), (4000, 300)])
def test_bucket_sum_matches_index_add(n, n_buckets):
    # 300 x 7 takes index_add_, 4000 x 80 the sparse product
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, n_buckets, (n,), generator=g)
    src = torch.randn(n, 80, generator=g)
    want = torch.zeros(n_buckets, 80).index_add_(0, idx, src)
    torch.testing.assert_close(bucket_sum(idx, src, n_buckets), want, rtol=1e-5, atol=1e-4)
    assert bucket_sum(idx[:0], src[:0], n_buckets).abs().sum() == 0


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.floats(-1e30, 1e30, allow_nan=False, allow_subnormal=False), min_size=1, max_size=60
    )
)
def test_histogram_median_is_within_one_sixteenth_of_the_lower_median(xs):
    x = torch.tensor(xs, dtype=torch.float32)
    mags = np.sort(np.abs(x.numpy()).astype(np.float64))
    want = mags[(len(mags) + 1) // 2 - 1]
    got = histogram_median(abs_histogram(x))
    if want < 2**-126:  # zero (or subnormal): reported as 0
        assert got == 0.0
    else:
        assert abs(got - want) <= want / 16


def test_histogram_median_skips_non_finite_values():
    x = torch.tensor([1.0, float("nan"), float("inf"), float("-inf"), 1.0])
    assert histogram_median(abs_histogram(x)) == pytest.approx(1.0625)
    assert np.isnan(histogram_median(abs_histogram(torch.tensor([float("nan")]))))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 8), st.integers(0, 1000))
def test_best_rows_are_the_top_k_by_value_then_rank(n, k, seed):
    rng = np.random.default_rng(seed)
    sub = rng.integers(-2, 3, size=(n, 3)).astype(np.float32)  # many ties
    sub[rng.random((n, 3)) < 0.1] = -np.inf
    rank = rng.permutation(n)
    value, row = best_rows(torch.as_tensor(sub), k, torch.as_tensor(rank))
    for c in range(3):
        want = sorted(range(n), key=lambda i: (-sub[i, c], rank[i]))[: min(k, n)]
        assert value[:, c].tolist() == sub[want, c].tolist()
        finite = [i for i in want if np.isfinite(sub[i, c])]  # -inf rows are empty slots
        assert row[: len(finite), c].tolist() == finite
