"""RDMs, RDM comparisons and noise ceilings against rsatoolbox on identical data (1e-10)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rsatoolbox as rt
import scipy.stats
import torch
from scipy.spatial.distance import pdist

from neuronatlas.compare import (
    COMPARISONS,
    _rsa,
    compare_rdms,
    noise_ceiling,
    rank,
    rdm,
    rdm_crossnobis,
    squareform,
)
from neuronatlas.compare._validate import CompareError

TOL = dict(rtol=1e-10, atol=1e-10)


def data(n=30, p=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    return x, x @ rng.standard_normal((p, p)) * 0.3 + rng.standard_normal((n, p))


@pytest.mark.parametrize("metric", ["correlation", "euclidean"])
def test_rdms_match_rsatoolbox(metric, monkeypatch):
    x, _ = data()
    ref = rt.rdm.calc_rdm(rt.data.Dataset(x), method=metric).get_vectors()[0]
    np.testing.assert_allclose(rdm(x, metric).numpy(), ref, **TOL)
    monkeypatch.setattr(_rsa, "_BLOCK_ENTRIES", 50)  # many row blocks
    np.testing.assert_allclose(rdm(torch.from_numpy(x).float(), metric).numpy(),
                               rt.rdm.calc_rdm(rt.data.Dataset(x.astype(np.float32).astype(np.float64)),
                                               method=metric).get_vectors()[0], **TOL)  # fmt: skip


@pytest.mark.parametrize("metric", ["correlation", "cosine", "euclidean"])
def test_rdm_blocks_and_strips(metric, monkeypatch):
    x, _ = data(n=37)
    ref = rdm(x, metric).numpy()
    if metric == "euclidean":  # squared, per unit
        np.testing.assert_allclose(ref, pdist(x, "sqeuclidean") / x.shape[1], **TOL)
    else:
        np.testing.assert_allclose(ref, pdist(x, metric), **TOL)
    for rows, sub in [(8, 3), (5, 5), (36, 7), (1, 1)]:  # partial blocks and strips
        monkeypatch.setattr(_rsa, "_ROW_BLOCK", rows)
        monkeypatch.setattr(_rsa, "_SUB_BLOCK", sub)
        np.testing.assert_allclose(rdm(x, metric).numpy(), ref, **TOL)


def test_cosine_rdm_matches_scipy():
    x, _ = data()
    np.testing.assert_allclose(rdm(x, "cosine").numpy(), pdist(x, "cosine"), **TOL)
    before = x.copy()
    rdm(x, "correlation"), rdm(torch.from_numpy(x), "cosine")
    np.testing.assert_array_equal(x, before)  # the input is left alone


def test_crossnobis_matches_rsatoolbox():
    rng = np.random.default_rng(1)
    n_fold, n, p = 4, 12, 9
    signal = rng.standard_normal((n, p))
    x = signal[None] + 0.7 * rng.standard_normal((n_fold, n, p))
    ds = rt.data.Dataset(
        x.reshape(-1, p),
        obs_descriptors={  # strings: rsatoolbox casts NaN into integer descriptors
            "stim": np.tile([f"s{i:02d}" for i in range(n)], n_fold),
            "fold": np.repeat([f"f{k}" for k in range(n_fold)], n),
        },
    )
    ref = rt.rdm.calc_rdm(ds, method="crossnobis", descriptor="stim", cv_descriptor="fold")
    np.testing.assert_allclose(rdm_crossnobis(x).numpy(), ref.get_vectors()[0], **TOL)
    a = rng.standard_normal((p, p))
    prec = a @ a.T / p + np.eye(p)
    ref = rt.rdm.calc_rdm(
        ds, method="crossnobis", descriptor="stim", cv_descriptor="fold", noise=prec
    )
    np.testing.assert_allclose(rdm_crossnobis(x, prec).numpy(), ref.get_vectors()[0], **TOL)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("method", COMPARISONS)
def test_comparisons_match_rsatoolbox(method, ties):
    x, y = data(n=25)
    v1, v2 = rdm(x).numpy(), rdm(y).numpy()
    if ties:  # coarse RDMs: many tied dissimilarities
        v1, v2 = np.round(v1, 1), np.round(v2 * 2, 0)
    r1, r2 = rt.rdm.RDMs(v1[None]), rt.rdm.RDMs(v2[None])
    ref = rt.rdm.compare(r1, r2, method=method)[0, 0]
    assert float(compare_rdms(v1, v2, method)) == pytest.approx(ref, rel=1e-10, abs=1e-10)


def test_stacks_give_all_pairs():
    x, y = data()
    a = torch.stack([rdm(x), rdm(y)])
    out = compare_rdms(a, a[:1], "corr")
    assert out.shape == (2, 1) and float(out[0, 0]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "method", ["cosine", "corr", "spearman", "rho-a", "cosine_cov", "corr_cov"]
)
def test_noise_ceiling_matches_rsatoolbox(method):
    rng = np.random.default_rng(2)
    truth = rng.standard_normal((20, 15))
    subjects = np.stack(
        [rdm(truth + 1.2 * rng.standard_normal((20, 15))).numpy() for _ in range(5)]
    )
    ref = rt.inference.boot_noise_ceiling(rt.rdm.RDMs(subjects), method=method)
    got = noise_ceiling(subjects, method)
    assert got == pytest.approx(tuple(ref), rel=1e-10, abs=1e-10)
    assert got[0] < got[1]


def test_noise_ceiling_tau_a_matches_rsatoolbox():
    rng = np.random.default_rng(3)
    truth = rng.standard_normal((10, 6))
    subjects = np.stack([rdm(truth + rng.standard_normal((10, 6))).numpy() for _ in range(4)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rsatoolbox warns about averaged ranks
        ref = rt.inference.boot_noise_ceiling(rt.rdm.RDMs(subjects), method="tau-a")
    assert noise_ceiling(subjects, "tau-a") == pytest.approx(tuple(ref), rel=1e-10, abs=1e-10)


def test_rank_and_squareform():
    v = torch.tensor([3.0, 1.0, 2.0, 1.0, 5.0, 2.0])
    np.testing.assert_array_equal(rank(v).numpy(), scipy.stats.rankdata(v.numpy()))
    sq = squareform(v[:6]).numpy()
    from scipy.spatial.distance import squareform as sp_sq

    np.testing.assert_array_equal(sq, sp_sq(v.numpy()))


def _rank_cases():
    rng = np.random.default_rng(4)
    for n in (2, 3, 17, 1000):
        yield rng.standard_normal(n)  # negative values: sign-flip transform
        yield np.abs(rng.standard_normal(n))  # non-negative: bit patterns as they are
        yield np.round(rng.standard_normal(n), 1)  # many ties
        yield np.ones(n)  # one tie group
        yield np.r_[rng.standard_normal(n), -0.0, 0.0, -0.0, np.inf, -np.inf, np.inf]
        yield np.r_[np.zeros(n), 5e-324, 1e-300, 2.0]  # subnormals next to zeros
        yield 1 + rng.standard_normal(n) * 1e-14  # a few ulps apart, no dropped bits
    for n in (10, 5000):  # a wide range drops value bits: colliding fields, mixed runs
        yield np.r_[0.0, 1e300, 1 + rng.standard_normal(n) * 1e-13]
        yield np.r_[-1e300, 1e300, np.round(1 + rng.standard_normal(n) * 1e-12, 14)]
        dense = 1 + np.arange(40) * 2.2e-16
        yield np.r_[-np.inf, np.inf, rng.choice(dense, n), -rng.choice(dense, n)]


@pytest.mark.parametrize("case", list(_rank_cases()))
def test_rank_matches_scipy(case, monkeypatch):
    for v in (case, -case, np.random.default_rng(5).permutation(case)):
        ref = scipy.stats.rankdata(v)
        np.testing.assert_array_equal(rank(torch.from_numpy(v.copy())).numpy(), ref)
        np.testing.assert_array_equal(_rsa._rank_argsort(v), ref)
    before = case.copy()
    rank(torch.from_numpy(case))
    np.testing.assert_array_equal(case, before)  # the input is left alone
    monkeypatch.setattr(_rsa, "_MAX_INDEX_BITS", 0)  # too many entries for the index field
    np.testing.assert_array_equal(rank(torch.from_numpy(case)).numpy(), scipy.stats.rankdata(case))


def test_rank_other_dtypes():
    v = np.array([3, 2**60 + 1, 2**60, 3, -5], dtype=np.int64)  # beyond float64's integers
    np.testing.assert_array_equal(rank(torch.from_numpy(v)).numpy(), scipy.stats.rankdata(v))
    w = np.array([0.5, -1.5, 0.5, 2.0], dtype=np.float32)
    np.testing.assert_array_equal(rank(torch.from_numpy(w)).numpy(), scipy.stats.rankdata(w))


def test_rank_nan_falls_back_to_argsort():
    v = np.array([2.0, np.nan, 1.0, 2.0])
    np.testing.assert_array_equal(rank(torch.from_numpy(v)).numpy(), _rsa._rank_argsort(v))


@pytest.mark.parametrize("ties", [False, True])
def test_spearman_large_rdms_match_rsatoolbox(ties):
    x, y = data(n=400, p=30, seed=6)
    v1, v2 = rdm(x).numpy(), rdm(y).numpy()
    if ties:
        v1, v2 = np.round(v1, 2), np.round(v2, 3)
    ref = rt.rdm.compare(rt.rdm.RDMs(v1[None]), rt.rdm.RDMs(v2[None]), method="spearman")[0, 0]
    assert float(compare_rdms(v1, v2, "spearman")) == pytest.approx(ref, rel=1e-10, abs=1e-10)


def test_errors():
    x, y = data()
    with pytest.raises(CompareError, match="metric must be one of"):
        rdm(x, "manhattan")
    with pytest.raises(CompareError, match="constant"):
        rdm(np.ones((4, 3)), "correlation")
    with pytest.raises(CompareError, match="same stimuli"):
        compare_rdms(rdm(x), rdm(y[:-1]))
    with pytest.raises(CompareError, match="method must be one of"):
        compare_rdms(rdm(x), rdm(y), "pearson")
    with pytest.raises(CompareError, match="one RDM per subject"):
        noise_ceiling(rdm(x))
    with pytest.raises(CompareError, match="n·\\(n-1\\)/2"):
        squareform(torch.ones(4))
