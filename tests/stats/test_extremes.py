"""Extremes against numpy, with padding, non-finite values and merges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats import Extremes, SiteBatch

from .conftest import random_batches, stacked


def test_matches_numpy_and_ignores_padding():
    batches = random_batches(5, 4, seed=2)
    for b in batches:  # padding holds huge values that must never count
        b.values[~b.mask] = 1e30
    e = Extremes(4)
    for b in batches:
        e.update(b)
    x, _, _ = stacked(batches)
    np.testing.assert_array_equal(e.result()["min"], x.min(0))
    np.testing.assert_array_equal(e.result()["max"], x.max(0))


def test_merge_equals_one_pass_and_state_round_trips(tmp_path):
    batches = random_batches(6, 3, seed=3)
    one, a, b = Extremes(3), Extremes(3), Extremes(3)
    for i, batch in enumerate(batches):
        one.update(batch)
        (a if i % 2 else b).update(batch)
    a.merge(b)
    torch.save(a.state_dict(), tmp_path / "e.pt")
    back = Extremes.from_state_dict(torch.load(tmp_path / "e.pt", weights_only=True))
    for name in ("min", "max"):
        np.testing.assert_array_equal(back.result()[name], one.result()[name])


def test_nonfinite_left_out_and_empty_units_are_nan():
    x = torch.tensor([[float("inf"), float("nan")], [-1.0, float("-inf")], [2.0, float("nan")]])
    e = Extremes(2)
    e.update(SiteBatch.from_values(x))
    r = e.result()
    assert r["min"][0] == -1.0 and r["max"][0] == 2.0
    assert np.isnan(r["min"][1]) and np.isnan(r["max"][1])


def test_wrong_units_raise():
    with pytest.raises(AccumulatorError, match="created for 2 units"):
        Extremes(2).update(SiteBatch.from_values(torch.ones(3, 5)))
