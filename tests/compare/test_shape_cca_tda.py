"""Shape metrics vs scipy, metric axioms; CCA vs a numpy brute force; tRSA vs rsatoolbox."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest
import rsatoolbox as rt
import scipy.linalg
import torch

from neuronatlas.compare import (
    canonical_correlations,
    geodesic_transform,
    geotopological_transform,
    orthogonal_procrustes,
    rdm,
    shape_distance,
    stochastic_shape_distance,
    svcca,
    svd_reduce,
    topological_rsa,
)
from neuronatlas.compare._validate import CompareError

# ``rsatoolbox.rdm.transform`` is shadowed by a function of that name in ``rsatoolbox.rdm``
rt_transform = importlib.import_module("rsatoolbox.rdm.transform")


def mats(k=4, n=25, p=6, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, p))
    return [torch.from_numpy(base @ rng.standard_normal((p, p)) + rng.standard_normal((n, p)))
            for _ in range(k)]  # fmt: skip


def test_procrustes_matches_scipy():
    x, y = mats(2)
    r, _ = scipy.linalg.orthogonal_procrustes(x.numpy(), y.numpy())
    np.testing.assert_allclose(orthogonal_procrustes(x, y).numpy(), r, rtol=1e-10, atol=1e-10)
    xc, yc = x - x.mean(0), y - y.mean(0)
    r, _ = scipy.linalg.orthogonal_procrustes(xc.numpy(), yc.numpy())
    ref = np.linalg.norm(xc.numpy() @ r - yc.numpy())
    assert float(shape_distance(x, y, score="euclidean")) == pytest.approx(ref, rel=1e-10)
    cos = np.trace(r.T @ xc.numpy().T @ yc.numpy()) / (np.linalg.norm(xc) * np.linalg.norm(yc))
    assert float(shape_distance(x, y)) == pytest.approx(np.arccos(cos), rel=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_shape_distance_is_a_metric(alpha):
    xs = mats(5, seed=1)
    d = {
        (i, j): float(shape_distance(xs[i], xs[j], alpha=alpha)) for i in range(5) for j in range(5)
    }
    for i, j in itertools.product(range(5), repeat=2):
        assert d[i, j] == pytest.approx(d[j, i], abs=1e-10)
    for i in range(5):
        assert d[i, i] == pytest.approx(0.0, abs=1e-6)
    for i, j, k in itertools.permutations(range(5), 3):
        assert d[i, k] <= d[i, j] + d[j, k] + 1e-10


def test_shape_invariances_and_padding():
    x, _ = mats(2)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    assert float(shape_distance(x, x @ q + 3.0)) == pytest.approx(0.0, abs=1e-6)
    narrow = x[:, :4]
    wide = torch.nn.functional.pad(narrow, (0, 3))
    assert float(shape_distance(narrow, x)) == pytest.approx(
        float(shape_distance(wide, x)), abs=1e-12
    )
    # alpha = 0 whitens: any invertible linear map is then a nuisance
    a = torch.randn(6, 6, dtype=torch.float64) + 3 * torch.eye(6, dtype=torch.float64)
    assert float(shape_distance(x, x @ a, alpha=0.0)) == pytest.approx(0.0, abs=1e-5)
    assert float(shape_distance(x, x @ a, alpha=1.0)) > 0.01


def test_stochastic_shape_reduces_to_the_deterministic_case():
    rng = np.random.default_rng(4)
    mu_x, mu_y = rng.standard_normal((12, 3)), rng.standard_normal((12, 3))
    noise = lambda s: 0.3 * rng.standard_normal((s, 12, 3))  # noqa: E731
    x, y = mu_x[None] + noise(40), mu_y[None] + noise(30)
    # alpha = 0: means only = euclidean Procrustes on the sample means, / sqrt(n), times sqrt(2)
    ref = float(shape_distance(x.mean(0), y.mean(0), score="euclidean")) * np.sqrt(2 / 12)
    assert float(stochastic_shape_distance(x, y, alpha=0.0)) == pytest.approx(ref, rel=1e-8)
    # a rotated copy (same samples) is at distance 0 for every alpha
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    for alpha in (0.5, 1.0, 2.0):
        assert float(
            stochastic_shape_distance(x, x @ q, alpha=alpha, n_restarts=0)
        ) == pytest.approx(0.0, abs=1e-6)
    dxy = float(stochastic_shape_distance(x, y, alpha=1.0))
    dyx = float(stochastic_shape_distance(y, x, alpha=1.0))
    assert dxy > 0.1 and dxy == pytest.approx(dyx, rel=1e-6)


def test_stochastic_shape_matches_a_brute_force_over_planar_rotations():
    """In 2-D, O(2) is one angle and a reflection: grid-search the exact objective
    (1/n) Σ_i (2-α)||μ_i - Qμ'_i||² + α B²(Σ_i, QΣ'_iQᵀ), with B² from scipy's sqrtm."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 3, 2)) * np.array([1.0, 2.0]) + rng.standard_normal((3, 2))
    y = rng.standard_normal((40, 3, 2)) @ rng.standard_normal((2, 2)) + rng.standard_normal((3, 2))

    def moments(s):
        mu = s.mean(0)
        return mu - mu.mean(0), [np.cov(s[:, i].T) for i in range(s.shape[1])]

    (mx, cx), (my, cy) = moments(x), moments(y)

    def bures2(a, b):
        ra = scipy.linalg.sqrtm(a).real
        return np.trace(a) + np.trace(b) - 2 * np.trace(scipy.linalg.sqrtm(ra @ b @ ra).real)

    for alpha in (0.5, 1.0, 2.0):
        best = np.inf
        for theta in np.linspace(0, 2 * np.pi, 721):
            c, s_ = np.cos(theta), np.sin(theta)
            for q in (np.array([[c, -s_], [s_, c]]), np.array([[c, s_], [s_, -c]])):
                obj = np.mean([(2 - alpha) * np.sum((mx[i] - q @ my[i]) ** 2)
                               + alpha * bures2(cx[i], q @ cy[i] @ q.T) for i in range(3)])  # fmt: skip
                best = min(best, obj)
        got = float(stochastic_shape_distance(x, y, alpha=alpha)) ** 2
        assert got == pytest.approx(best, rel=5e-4), alpha  # grid step 0.5°


def test_canonical_correlations_match_a_numpy_brute_force():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((80, 5))
    y = np.c_[x[:, :2] + 0.5 * rng.standard_normal((80, 2)), rng.standard_normal((80, 2))]
    xc, yc = x - x.mean(0), y - y.mean(0)
    sxx, syy, sxy = xc.T @ xc, yc.T @ yc, xc.T @ yc
    m = np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T)
    ref = np.sqrt(np.sort(np.clip(np.linalg.eigvals(m).real, 0, 1))[::-1][:4])
    np.testing.assert_allclose(canonical_correlations(x, y).numpy(), ref, rtol=1e-8, atol=1e-10)


def test_svcca():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((60, 8)) * np.array([10, 8, 6, 4, 0.01, 0.01, 0.01, 0.01])
    assert svd_reduce(torch.from_numpy(x), 0.99).shape[1] == 4
    assert svd_reduce(torch.from_numpy(x), 2).shape[1] == 2
    y = x @ rng.standard_normal((8, 8))
    assert float(svcca(x, x @ np.diag(np.arange(1.0, 9)))) == pytest.approx(1.0, abs=1e-8)
    assert 0 < float(svcca(x, rng.standard_normal((60, 8)))) < 0.6
    assert float(svcca(x, y, keep=8)) == pytest.approx(1.0, abs=1e-8)
    with pytest.raises(CompareError, match="keep must be"):
        svd_reduce(torch.from_numpy(x), 1.5)


@pytest.mark.parametrize(("low", "up"), [(0.0, 1.0), (0.1, 0.6), (0.3, 0.3)])
def test_geotopological_transform_matches_rsatoolbox(low, up):
    x, _ = mats(2, n=15)
    v = rdm(x).numpy()
    if low == up:
        ref = np.where(v < np.quantile(v, low), 0.0, 1.0)  # rsatoolbox divides 0/0 here
    else:
        ref = rt_transform.geotopological_transform(rt.rdm.RDMs(v[None].copy()), low, up)
        ref = ref.get_vectors()[0]
    np.testing.assert_allclose(geotopological_transform(v, low, up).numpy(), ref, atol=1e-12)


def test_geodesic_transform_matches_rsatoolbox():
    x, _ = mats(2, n=12)
    v = rdm(x).numpy()
    ref = rt_transform.geodesic_transform(rt.rdm.RDMs(v[None].copy())).get_vectors()[0]
    np.testing.assert_allclose(geodesic_transform(v).numpy(), ref, rtol=1e-10)


def test_topological_rsa():
    x, y = mats(2)
    assert float(topological_rsa(x, x @ torch.randn(6, 6, dtype=torch.float64) * 0 + x, low=0.2,
                                 up=0.7)) == pytest.approx(1.0)  # fmt: skip
    assert 0 < float(topological_rsa(x, y, low=0.1, up=0.5, comparison="spearman")) < 1
    with pytest.raises(CompareError, match="0 ≤ low ≤ up ≤ 1"):
        topological_rsa(x, y, low=0.8, up=0.2)
