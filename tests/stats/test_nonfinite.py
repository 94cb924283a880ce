"""Non-finite counts, and that no other statistic sees NaN or inf."""

from __future__ import annotations

import numpy as np
import torch

from neuronatlas.stats import NonFinite, SiteBatch, UnitStats

from .conftest import random_batches, stacked


def sprinkle(rng, shape):
    x = rng.standard_normal(shape)
    bad = rng.random(shape)
    x[bad < 0.05] = np.nan
    x[(bad >= 0.05) & (bad < 0.08)] = np.inf
    x[(bad >= 0.08) & (bad < 0.10)] = -np.inf
    return x


def test_counts_match_numpy_and_padding_is_ignored():
    batches = random_batches(6, 4, seed=6, gen=sprinkle)
    for b in batches:
        b.values[~b.mask] = float("nan")  # padding NaNs are not activations
    nf = NonFinite(4)
    for b in batches:
        nf.update(b)
    x, _, _ = stacked(batches)
    r = nf.result()
    np.testing.assert_array_equal(r["n_nan"], np.isnan(x).sum(0))
    np.testing.assert_array_equal(r["n_posinf"], np.isposinf(x).sum(0))
    np.testing.assert_array_equal(r["n_neginf"], np.isneginf(x).sum(0))
    np.testing.assert_array_equal(nf.finite_count(), np.isfinite(x).sum(0))


def test_every_statistic_excludes_nonfinite_values():
    batches = random_batches(8, 3, seed=7, gen=sprinkle)
    stats = UnitStats(3, top_k=4, context=1)
    for b in batches:
        stats.update(b)
    x, _, _ = stacked(batches)
    r = stats.result()
    for u in range(3):
        col = x[:, u][np.isfinite(x[:, u])]
        assert r["count"][u] == len(col)
        np.testing.assert_allclose(r["mean"][u], col.mean(), rtol=1e-6)
        np.testing.assert_allclose(r["std"][u], col.std(), rtol=1e-5)
        assert (r["min"][u], r["max"][u]) == (col.min(), col.max())
        np.testing.assert_allclose(r["frac_active"][u], (col > 0).mean(), rtol=1e-12)
        assert col.min() <= r["p999"][u] <= col.max()
        assert r["hist_counts"][u].sum() == len(col)
        assert np.isfinite(r["hist_edges"][u]).all()
    ex = stats.exemplars()
    assert np.isfinite(ex["activation"]).all()
    for u in range(3):
        col = np.sort(x[:, u][np.isfinite(x[:, u])])[::-1][:4]
        np.testing.assert_array_equal(ex["activation"][ex["unit"] == u], col.astype(np.float32))


def test_merge_and_state(tmp_path):
    a, b = NonFinite(1), NonFinite(1)
    a.update(SiteBatch.from_values(torch.tensor([[float("nan")], [1.0]])))
    b.update(SiteBatch.from_values(torch.tensor([[float("-inf")], [float("inf")], [0.0]])))
    a.merge(b)
    torch.save(a.state_dict(), tmp_path / "n.pt")
    back = NonFinite.from_state_dict(torch.load(tmp_path / "n.pt", weights_only=True))
    assert {k: v.tolist() for k, v in back.result().items()} == {
        "n_nan": [1],
        "n_posinf": [1],
        "n_neginf": [1],
    }
    assert back.finite_count().tolist() == [2]
