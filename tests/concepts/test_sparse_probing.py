"""k-sparse probing and Net2Vec on planted units, against brute force and numpy references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuronatlas.concepts import net2vec, rank_units, set_iou, sparse_probe, sparse_probe_atlas
from neuronatlas.concepts._net2vec import unit_ious


@pytest.fixture
def planted():
    """Balanced binary label; unit 7 alone reads it; units 3 and 11 each read it weakly."""
    rng = np.random.default_rng(0)
    n, d = 2000, 40
    y = np.arange(n) % 2 == 0
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, 7] += 4.0 * y
    x[:, 3] += 0.8 * y
    x[:, 11] -= 0.8 * y
    return x, y


def test_mean_difference_ranking_matches_numpy(planted):
    x, y = planted
    order = rank_units(x, y)
    ref = np.argsort(-np.abs(x[y].mean(0) - x[~y].mean(0)), kind="stable")
    assert order.tolist() == ref.tolist()
    assert order[0] == 7 and set(order[1:3]) == {3, 11}


@pytest.mark.parametrize("method", ["l1", "omp"])
def test_path_rankings_find_the_planted_units(planted, method):
    x, y = planted
    order = rank_units(x, y, method, k_max=3)
    assert order[0] == 7
    assert set(order[1:3]) == {3, 11}


def test_curve_and_single_neuron_candidates(planted):
    x, y = planted
    r = sparse_probe(x, y, ks=(1, 2, 4, 64), n_candidates=4)
    assert r.curve["k"].tolist() == [1, 2, 4, 40]  # capped at the number of units
    assert r.curve["units"].iloc[0] == [7]
    assert r.curve["f1"].iloc[0] > 0.95
    assert r.neurons["candidate"].tolist() == [True, False, False, False]
    assert r.neurons["unit"].iloc[0] == 7


def test_unit_ious_match_brute_force():
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=(60, 5)), 1)  # ties
    y = rng.random(60) < 0.3
    iou, thr = unit_ious(x, y)
    for u in range(5):
        brute = max(set_iou(x[:, u] > t, y) for t in np.unique(np.append(x[:, u], -np.inf)))
        assert iou[u] == pytest.approx(brute)
        assert set_iou(x[:, u] > thr[u], y) == pytest.approx(brute)


def test_net2vec_combination_beats_single_units():
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.random(n) < 0.2
    x = rng.normal(size=(n, 10)).astype(np.float32)
    x[:, :4] += 1.2 * y[:, None]  # spread over four units
    r = net2vec(x, y)
    assert r.iou_combination > r.iou_best_unit + 0.1
    assert set(r.units["unit"].iloc[:4]) == {0, 1, 2, 3}  # largest weights
    assert r.best_unit in {0, 1, 2, 3}


def test_sparse_probe_atlas_saves_curve(tiny_atlas):
    curve, neurons = sparse_probe_atlas(tiny_atlas, "code", ks=(1, 4), n_candidates=2, max_rows=300)
    assert set(curve["k"]) == {1, 4}
    assert curve.groupby("site").size().eq(2).all()
    folder = tiny_atlas / "analyses" / "probes" / "code-sparse"
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "curve.parquet"), curve)
    assert neurons.groupby("site").size().eq(2).all()
