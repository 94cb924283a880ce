"""UnitStats: every column against numpy, cheap set, merges, state, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats import COLUMNS, QUANTILES, SiteBatch, UnitStats

from .conftest import random_batches, rank_error, stacked


def skewed(rng, shape):
    x = rng.standard_normal(shape)
    x[..., 0] = np.round(x[..., 0])  # ties
    x[..., 1] = np.maximum(x[..., 1], 0)  # ReLU point mass
    x[..., 2] = rng.lognormal(0, 1, shape[:-1]) + 5
    return x


def feed(stats, batches):
    for b in batches:
        stats.update(b)
    return stats


def test_every_column_against_numpy():
    batches = random_batches(30, 4, rows=4, n_pos=64, seed=21, dtype=torch.float64, gen=skewed)
    stats = feed(UnitStats(4, top_k=3, context=2, threshold=0.5), batches)
    x, _, _ = stacked(batches)
    r = stats.result()
    assert tuple(r) == COLUMNS
    assert r["count"].dtype == np.int64 and r["hist_counts"].dtype == np.int64
    assert all(r[c].shape == (4,) for c in COLUMNS if not c.startswith("hist"))
    assert r["hist_edges"].shape == (4, 33) and r["hist_counts"].shape == (4, 32)
    np.testing.assert_array_equal(r["count"], [x.shape[0]] * 4)
    want = {
        "mean": x.mean(0),
        "std": x.std(0),
        "var": x.var(0),
        "skew": scipy.stats.skew(x, axis=0),
        "kurtosis": scipy.stats.kurtosis(x, axis=0),
        "min": x.min(0),
        "max": x.max(0),
        "frac_active": (x > 0).mean(0),
        "frac_above": (x > 0.5).mean(0),
    }
    for name, col in want.items():
        np.testing.assert_allclose(r[name], col, rtol=1e-10, err_msg=name)
    for name, q in QUANTILES.items():
        for u in range(4):
            assert rank_error(np.sort(x[:, u]), r[name][u], q) <= 0.01
    np.testing.assert_array_equal(r["hist_counts"].sum(1), r["count"])
    for name in ("n_nan", "n_posinf", "n_neginf"):
        np.testing.assert_array_equal(r[name], [0] * 4)


def test_cheap_set_and_switches():
    batches = random_batches(3, 2, seed=22)
    cheap = feed(UnitStats.cheap(2), batches).result()
    assert list(cheap) == [
        "count", "mean", "std", "var", "min", "max", "frac_active", "frac_above",
        "n_nan", "n_posinf", "n_neginf",
    ]  # fmt: skip
    bare = UnitStats(2, top_k=0, moments=False, extremes=False, activity=False, quantiles=False)
    r = feed(bare, batches).result()
    assert list(r) == ["count", "n_nan", "n_posinf", "n_neginf"]
    np.testing.assert_array_equal(r["count"], [stacked(batches)[0].shape[0]] * 2)
    ex = bare.exemplars()
    assert ex["ctx_acts"].shape == (0, 21) and ex["unit"].dtype == np.int32
    assert bare.topk is None and bare.quantiles is None and bare.nonfinite is not None


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), n_shards=st.integers(2, 4))
def test_merge_of_random_splits_equals_one_pass(seed, n_shards):
    batches = random_batches(16, 4, rows=3, n_pos=64, seed=seed, dtype=torch.float64, gen=skewed)
    owner = np.random.default_rng(seed).integers(0, n_shards, size=len(batches))
    one = feed(UnitStats(4, top_k=4, context=1, sketch_k=128), batches)
    shards = [UnitStats(4, top_k=4, context=1, sketch_k=128, seed=s) for s in range(n_shards)]
    for b, o in zip(batches, owner, strict=True):
        shards[o].update(b)
    merged = shards[0]
    for s in shards[1:]:
        merged.merge(s)
    a, b = one.result(), merged.result()
    exact = ("count", "min", "max", "frac_active", "frac_above", "n_nan", "n_posinf", "n_neginf")
    for name in exact:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)
    for name in ("mean", "std", "var", "skew", "kurtosis"):
        np.testing.assert_allclose(b[name], a[name], rtol=1e-10, err_msg=name)
    np.testing.assert_array_equal(b["hist_edges"], a["hist_edges"])
    x, _, _ = stacked(batches)
    bound = merged.quantiles.rank_error_bound(1e-9)
    for name, q in QUANTILES.items():
        for u in range(4):
            assert rank_error(np.sort(x[:, u]), b[name][u], q) <= bound[u]
    for key, col in one.exemplars().items():
        np.testing.assert_array_equal(merged.exemplars()[key], col, err_msg=key)


def test_state_round_trips_through_torch_save(tmp_path):
    batches = random_batches(8, 3, rows=4, n_pos=64, seed=23, gen=skewed)
    stats = feed(UnitStats(3, top_k=2, context=1, sketch_k=64), batches[:5])
    torch.save(stats.state_dict(), tmp_path / "s.pt")
    back = UnitStats.from_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    feed(stats, batches[5:])
    feed(back, batches[5:])
    for name, col in stats.result().items():
        np.testing.assert_array_equal(back.result()[name], col, err_msg=name)
    for name, col in stats.exemplars().items():
        np.testing.assert_array_equal(back.exemplars()[name], col, err_msg=name)
    assert back.settings == stats.settings


def test_units_without_finite_values_are_nan():
    x = torch.tensor([[[float("nan"), 1.0]], [[float("inf"), 2.0]]])
    r = feed(UnitStats(2), [SiteBatch.from_values(x)]).result()
    assert r["count"].tolist() == [0, 2]
    for name in COLUMNS:
        if name in ("count", "hist_counts", "n_nan", "n_posinf", "n_neginf"):
            continue
        assert np.isnan(r[name][0]).all(), name
        assert np.isfinite(r[name][1]).all(), name
    assert r["hist_counts"][0].sum() == 0 and r["n_nan"][0] == 1 and r["n_posinf"][0] == 1
    empty = UnitStats(3).result()
    assert empty["count"].tolist() == [0, 0, 0] and np.isnan(empty["p50"]).all()


def test_merge_refuses_other_sites_settings_and_kinds():
    with pytest.raises(AccumulatorError, match="this one has 3 units, the other 4"):
        UnitStats(3).merge(UnitStats(4))
    with pytest.raises(AccumulatorError, match="different 'top_k': 20 here, 5 in the other"):
        UnitStats(3).merge(UnitStats(3, top_k=5))
    with pytest.raises(AccumulatorError, match="different 'quantiles'"):
        UnitStats(3).merge(UnitStats(3, quantiles=False))
    with pytest.raises(AccumulatorError, match="expects another UnitStats"):
        UnitStats(3).merge(object())
    UnitStats(3, seed=1).merge(UnitStats(3, seed=2))  # seeds may differ between shards


def test_bad_input_gets_clear_errors():
    stats = UnitStats(3)
    with pytest.raises(AccumulatorError, match="created for 3 units but the batch has 2"):
        stats.update(SiteBatch.from_values(torch.ones(4, 2)))
    with pytest.raises(AccumulatorError, match="expects a SiteBatch; got Tensor"):
        stats.update(torch.ones(4, 3))
    with pytest.raises(AccumulatorError, match="'top_k' parameter of UnitStats"):
        UnitStats(3, top_k=-1)
    with pytest.raises(AccumulatorError, match="n_units"):
        UnitStats(0)
    with pytest.raises(AccumulatorError, match="holds a 'Moments', not a 'UnitStats'"):
        UnitStats.from_state_dict(stats.moments.state_dict())
    state = stats.state_dict()
    state["version"] = 99
    with pytest.raises(AccumulatorError, match="version 99 is not supported"):
        UnitStats.from_state_dict(state)
