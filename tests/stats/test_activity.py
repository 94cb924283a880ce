"""Activity fractions against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats import Activity, SiteBatch

from .conftest import random_batches, stacked


def relu_like(rng, shape):
    return np.maximum(rng.standard_normal(shape), 0.0)  # many exact zeros: not active


@pytest.mark.parametrize("threshold", [0.0, 0.5, -0.25])
def test_matches_numpy_with_padding(threshold):
    batches = random_batches(6, 5, seed=5, gen=relu_like)
    a = Activity(5, threshold=threshold)
    for b in batches:
        a.update(b)
    x, _, _ = stacked(batches)
    np.testing.assert_allclose(a.result()["frac_active"], (x > 0).mean(0), rtol=1e-12)
    np.testing.assert_allclose(a.result()["frac_above"], (x > threshold).mean(0), rtol=1e-12)


def test_merge_state_and_nonfinite(tmp_path):
    x = torch.tensor([[1.0, float("nan")], [float("inf"), float("nan")], [-1.0, float("nan")]])
    a, b = Activity(2, threshold=0.5), Activity(2, threshold=0.5)
    a.update(SiteBatch.from_values(x))
    b.update(SiteBatch.from_values(torch.tensor([[0.7, 0.0]])))
    a.merge(b)
    torch.save(a.state_dict(), tmp_path / "a.pt")
    r = Activity.from_state_dict(torch.load(tmp_path / "a.pt", weights_only=True)).result()
    np.testing.assert_allclose(r["frac_active"], [2 / 3, 0.0])
    np.testing.assert_allclose(r["frac_above"], [2 / 3, 0.0])
    empty = Activity(1).result()
    assert np.isnan(empty["frac_active"][0]) and np.isnan(empty["frac_above"][0])


def test_settings_are_checked():
    with pytest.raises(AccumulatorError, match="different 'threshold'"):
        Activity(2, threshold=0.1).merge(Activity(2))
    with pytest.raises(AccumulatorError, match="finite number"):
        Activity(2, threshold=float("nan"))
