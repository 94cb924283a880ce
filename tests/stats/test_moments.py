"""Moments against numpy/scipy, and merging of random splits against one pass."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats import Moments, SiteBatch, batch_moments, merge_moments

from .conftest import random_batches, stacked


def reference(x: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "count": np.full(x.shape[1], x.shape[0]),
        "mean": x.mean(0),
        "var": x.var(0),
        "std": x.std(0),
        "skew": scipy.stats.skew(x, axis=0, bias=True),
        "kurtosis": scipy.stats.kurtosis(x, axis=0, bias=True),
    }


def lognormal_shifted(rng, shape):
    return rng.lognormal(0.0, 1.0, size=shape) + 50.0  # skewed, with |mean| >> std


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_matches_numpy_with_padding(dtype, rtol):
    batches = random_batches(7, 5, seed=1, dtype=dtype, gen=lognormal_shifted)
    m = Moments(5)
    for b in batches:
        m.update(b)
    x, _, _ = stacked(batches)
    got, want = m.result(), reference(x)
    np.testing.assert_array_equal(got["count"], want["count"])
    for name in ("mean", "var", "std", "skew", "kurtosis"):
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, err_msg=name)


def test_bfloat16_input_is_computed_in_float32():
    x = torch.randn(64, 1, 3).to(torch.bfloat16)
    m = Moments(3)
    m.update(SiteBatch.from_values(x))
    ref = x.double().reshape(64, 3).numpy()
    np.testing.assert_allclose(m.result()["mean"], ref.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m.result()["var"], ref.var(0), rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    cuts=st.lists(st.integers(0, 11), min_size=1, max_size=4),
    order=st.sampled_from([2, 4]),
)
def test_merge_of_random_splits_equals_one_pass(seed, cuts, order):
    batches = random_batches(12, 4, seed=seed, dtype=torch.float64, gen=lognormal_shifted)
    one = Moments(4, order=order)
    for b in batches:
        one.update(b)
    bounds = [0, *sorted(cuts), len(batches)]
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        part = Moments(4, order=order)
        for b in batches[lo:hi]:
            part.update(b)
        parts.append(part)
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    a, b = one.result(), merged.result()
    assert a.keys() == b.keys()
    np.testing.assert_array_equal(a["count"], b["count"])
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-10, atol=0, err_msg=name)


def test_batch_moments_and_merge_functions():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((1000, 3)) * 3 + 1)  # several row blocks
    whole = batch_moments(x)
    parts = merge_moments(batch_moments(x[:313]), batch_moments(x[313:]))
    for a, b in zip(whole, parts, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    d = x.numpy() - x.numpy().mean(0)
    np.testing.assert_allclose(whole[2].numpy(), (d**2).sum(0), rtol=1e-12)
    np.testing.assert_allclose(whole[3].numpy(), (d**3).sum(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(whole[4].numpy(), (d**4).sum(0), rtol=1e-12)


def test_masked_path_over_several_row_blocks():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((700, 4)).astype(np.float32) + 3
    finite = rng.random((700, 4)) > 0.3
    got = batch_moments(torch.as_tensor(x), torch.as_tensor(finite))
    for u in range(4):
        col = x[finite[:, u], u].astype(np.float64)
        d = col - col.mean()
        np.testing.assert_allclose(
            [t[u].item() for t in got],
            [len(col), col.mean(), (d**2).sum(), (d**3).sum(), (d**4).sum()],
            rtol=1e-5,
            atol=1e-3,
        )


def test_nonfinite_values_are_left_out():
    x = torch.tensor([[1.0, 1.0], [2.0, float("nan")], [float("inf"), 4.0], [7.0, float("-inf")]])
    m = Moments(2)
    m.update(SiteBatch.from_values(x))
    r = m.result()
    np.testing.assert_array_equal(r["count"], [3, 2])
    np.testing.assert_allclose(r["mean"], [10 / 3, 2.5])
    np.testing.assert_allclose(r["var"], [np.var([1, 2, 7]), np.var([1, 4])])


def test_empty_and_constant_units():
    x = torch.tensor([[float("nan"), 2.0], [float("nan"), 2.0]])
    m = Moments(2)
    m.update(SiteBatch.from_values(x))
    m.update(SiteBatch.from_values(torch.zeros(0, 2)))
    r = m.result()
    np.testing.assert_array_equal(r["count"], [0, 2])
    for name in ("mean", "var", "std", "skew", "kurtosis"):
        assert np.isnan(r[name][0]), name
    np.testing.assert_array_equal([r["mean"][1], r["var"][1], r["std"][1]], [2.0, 0.0, 0.0])
    assert np.isnan(r["skew"][1]) and np.isnan(r["kurtosis"][1])


def test_order_two_has_no_higher_moments():
    m = Moments(3, order=2)
    m.update(SiteBatch.from_values(torch.randn(10, 3)))
    assert sorted(m.result()) == ["count", "mean", "std", "var"]


def test_state_round_trip(tmp_path):
    m = Moments(3)
    for b in random_batches(3, 3, seed=4):
        m.update(b)
    torch.save(m.state_dict(), tmp_path / "m.pt")
    back = Moments.from_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    for name, col in m.result().items():
        np.testing.assert_array_equal(back.result()[name], col)


def test_merge_refuses_other_settings_and_sites():
    with pytest.raises(AccumulatorError, match="different 'order': 4 here, 2 in the other"):
        Moments(3).merge(Moments(3, order=2))
    with pytest.raises(AccumulatorError, match="this one has 3 units, the other 4"):
        Moments(3).merge(Moments(4))
    with pytest.raises(AccumulatorError, match="must be 2 or 4"):
        Moments(3, order=3)
    with pytest.raises(AccumulatorError, match="created for 3 units but the batch has 2"):
        Moments(3).update(SiteBatch.from_values(torch.ones(2, 2)))
