"""The quantile sketch: rank error against numpy on hard distributions, merges, histogram."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats import QUANTILES, QuantileSketch, SiteBatch
from neuronatlas.stats._quantiles import compaction_plan

from .conftest import random_batches, rank_error, stacked


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))


def mixture(rng, shape):
    """One distribution per unit: the hard cases for a quantile sketch."""
    n = shape[:-1]
    cols = [
        rng.standard_normal(n),
        rng.lognormal(0, 2, n),  # heavy right tail
        rng.standard_t(1.5, n),  # heavy tails on both sides
        np.maximum(rng.standard_normal(n), 0),  # ReLU: half the mass exactly at 0
        _gelu(rng.standard_normal(n)),
        rng.integers(0, 5, n).astype(float),  # only ties
        np.where(rng.random(n) < 0.995, 0.0, rng.exponential(100, n)),  # massive point mass
        rng.uniform(-1, 1, n) * 1e-3 + 1e3,  # tiny spread around a large offset
    ]
    return np.stack(cols, axis=-1)


N_UNITS = 8


def assert_rank_errors(sketch: QuantileSketch, x: np.ndarray, limit: float) -> float:
    worst = 0.0
    qs = [*QUANTILES.values(), 0.0, 0.01, 0.25, 0.75, 1.0]
    est = sketch.quantile(qs)
    for u in range(x.shape[1]):
        col = np.sort(x[:, u])
        for j, q in enumerate(qs):
            err = rank_error(col, est[u, j], q)
            assert err <= limit, (u, q, err)
            worst = max(worst, err)
    return worst


def test_rank_error_within_one_percent_on_hard_distributions():
    batches = random_batches(60, N_UNITS, rows=4, n_pos=128, seed=11, gen=mixture)
    sketch = QuantileSketch(N_UNITS)
    for b in batches:
        sketch.update(b)
    x, _, _ = stacked(batches)
    assert sketch.var_ > 0 and sum(sketch.sizes) < x.shape[0] / 5  # it really compacted
    bound = sketch.rank_error_bound(1e-6)
    assert np.all(bound <= 0.01)
    assert_rank_errors(sketch, x, limit=min(0.01, float(bound.max())))


def test_small_sketch_meets_its_own_bound():
    batches = random_batches(40, N_UNITS, rows=4, n_pos=128, seed=12, gen=mixture)
    sketch = QuantileSketch(N_UNITS, k=64)
    for b in batches:
        sketch.update(b)
    x, _, _ = stacked(batches)
    bound = float(sketch.rank_error_bound(1e-9).max())
    assert 0.01 < bound < 0.2  # small k: a loose but honest bound
    assert_rank_errors(sketch, x, limit=bound)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n_shards=st.integers(2, 5),
    k=st.sampled_from([32, 256, 1024]),
)
def test_merge_of_random_splits_keeps_the_guarantee(seed, n_shards, k):
    rng = np.random.default_rng(seed)
    batches = random_batches(30, N_UNITS, rows=3, n_pos=96, seed=seed, gen=mixture)
    owner = rng.integers(0, n_shards, size=len(batches))
    shards = [QuantileSketch(N_UNITS, k=k, seed=s) for s in range(n_shards)]
    for b, o in zip(batches, owner, strict=True):
        shards[o].update(b)
    merged = shards[0]
    for s in shards[1:]:
        merged.merge(s)
    x, _, _ = stacked(batches)
    assert merged.n_ == x.shape[0]
    assert sum(t.shape[1] * 2**h for h, t in enumerate(merged.levels_)) == x.shape[0]
    limit = float(merged.rank_error_bound(1e-9).max())
    if k == 1024:
        assert limit <= 0.01
    assert_rank_errors(merged, x, limit=max(limit, 1e-12))


def test_short_streams_are_exact():
    batches = random_batches(4, N_UNITS, rows=2, n_pos=32, seed=13, gen=mixture)
    sketch = QuantileSketch(N_UNITS, k=1024)
    for b in batches:
        sketch.update(b)
    x, _, _ = stacked(batches)
    assert sketch.var_ == 0
    qs = [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0]
    want = np.quantile(x, qs, axis=0, method="inverted_cdf").T
    np.testing.assert_array_equal(sketch.quantile(qs), want.astype(np.float32))


def test_histogram_counts_follow_the_data():
    batches = random_batches(40, N_UNITS, rows=4, n_pos=128, seed=14, gen=mixture)
    sketch = QuantileSketch(N_UNITS, bins=32)
    for b in batches:
        sketch.update(b)
    x, _, _ = stacked(batches)
    edges, counts = sketch.histogram()
    assert edges.shape == (N_UNITS, 33) and counts.shape == (N_UNITS, 32)
    n = x.shape[0]
    for u in range(N_UNITS):
        np.testing.assert_array_equal(edges[u, [0, -1]], [x[:, u].min(), x[:, u].max()])
        assert counts[u].sum() == n and (counts[u] >= 0).all()
        if edges[u, 0] == edges[u, -1]:
            continue
        exact = np.histogram(x[:, u], bins=edges[u])[0]
        gap = np.abs(np.cumsum(counts[u]) - np.cumsum(exact)).max()
        assert gap <= 0.01 * n, (u, gap)


def test_nonfinite_values_are_counted_out():
    def dirty(rng, shape):
        x = mixture(rng, shape)
        bad = rng.random(shape)
        x[bad < 0.02] = np.nan
        x[(bad >= 0.02) & (bad < 0.03)] = np.inf
        x[(bad >= 0.03) & (bad < 0.05)] = -np.inf
        return x

    batches = random_batches(40, N_UNITS, rows=4, n_pos=128, seed=15, gen=dirty)
    sketch = QuantileSketch(N_UNITS)
    for b in batches:
        sketch.update(b)
    x, _, _ = stacked(batches)
    est = sketch.quantile(list(QUANTILES.values()))
    edges, counts = sketch.histogram()
    for u in range(N_UNITS):
        col = np.sort(x[:, u][np.isfinite(x[:, u])])
        for j, q in enumerate(QUANTILES.values()):
            assert rank_error(col, est[u, j], q) <= 0.01
        assert counts[u].sum() == len(col)
        np.testing.assert_array_equal(edges[u, [0, -1]], [col[0], col[-1]])


def test_empty_units_and_empty_sketch():
    x = torch.tensor([[float("nan"), 1.0], [float("inf"), 2.0]])
    sketch = QuantileSketch(2)
    r0 = sketch.result()
    assert np.isnan(r0["p50"]).all() and (r0["hist_counts"] == 0).all()
    sketch.update(SiteBatch.from_values(x))
    r = sketch.result()
    assert np.isnan(r["p50"][0]) and np.isnan(r["hist_edges"][0]).all()
    assert (r["hist_counts"][0] == 0).all()
    assert r["p50"][1] == 1.0 and r["hist_counts"][1].sum() == 2


def test_constant_unit_has_one_full_bin():
    sketch = QuantileSketch(1, bins=4)
    sketch.update(SiteBatch.from_values(torch.full((5000, 1), 3.0)))
    edges, counts = sketch.histogram()
    np.testing.assert_array_equal(edges[0], [3.0] * 5)
    np.testing.assert_array_equal(counts[0], [0, 0, 0, 5000])
    assert sketch.quantile(0.5)[0] == 3.0


def test_compaction_schedule_keeps_the_bound_for_long_streams():
    """The schedule is data-independent: check sqrt(V) <= 0.001 N on sizes alone."""
    for batch, total in ((1, 20_000), (100, 1_000_000), (4096, 10_000_000)):
        sizes, var, n, worst = [0], 0.0, 0, 0.0
        while n < total:
            sizes[0] += batch
            n += batch
            for h in compaction_plan(sizes, 1024):
                m = sizes[h] - sizes[h] % 2
                sizes[h] -= m
                if h + 1 == len(sizes):
                    sizes.append(0)
                sizes[h + 1] += m // 2
                var += 4.0**h
            worst = max(worst, math.sqrt(var) / n)
        assert 0.0005 < worst <= 0.001, (batch, worst)
        assert sum(sizes) <= 3 * 1024


def test_deterministic_and_state_round_trip(tmp_path):
    batches = random_batches(20, 3, rows=4, n_pos=64, seed=16)
    a, b = QuantileSketch(3, k=64), QuantileSketch(3, k=64)
    for batch in batches[:10]:
        a.update(batch)
        b.update(batch)
    torch.save(a.state_dict(), tmp_path / "q.pt")
    c = QuantileSketch.from_state_dict(torch.load(tmp_path / "q.pt", weights_only=True))
    for batch in batches[10:]:
        b.update(batch)
        c.update(batch)
    for name, col in b.result().items():
        np.testing.assert_array_equal(c.result()[name], col, err_msg=name)
    assert c.var_ == b.var_ and c.sizes == b.sizes


def test_settings_and_arguments_are_checked():
    with pytest.raises(AccumulatorError, match="different 'k'"):
        QuantileSketch(2, k=64).merge(QuantileSketch(2, k=128))
    with pytest.raises(AccumulatorError, match="different 'bins'"):
        QuantileSketch(2, bins=8).merge(QuantileSketch(2))
    with pytest.raises(AccumulatorError, match=r"probabilities in \[0, 1\]"):
        QuantileSketch(2).quantile(1.5)
    with pytest.raises(AccumulatorError, match="'k' parameter of QuantileSketch"):
        QuantileSketch(2, k=2)
