"""Permutation p-values are calibrated on null data; bootstrap intervals cover."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from neuronatlas.compare import bootstrap_ci, compare_features, permutation_test
from neuronatlas.compare._validate import CompareError


def test_permutation_p_values_are_uniform_under_the_null():
    """400 null datasets, 39 permutations each: P(p ≤ k/40) = k/40 exactly (exchangeable)."""
    ps = []
    for seed in range(400):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(15, generator=g), torch.randn(15, generator=g)
        stat = lambda p, x=x, y=y: float((x * y[p]).sum())  # noqa: E731
        ps.append(permutation_test(stat, 15, 39, seed=seed + 1000).p)
    ps = np.array(ps)
    for level in (0.1, 0.25, 0.5):
        lo, hi = scipy.stats.binom.ppf([0.0005, 0.9995], 400, level) / 400
        assert lo <= np.mean(ps <= level + 1e-12) <= hi, level
    assert ps.min() >= 1 / 40


def test_cka_permutation_p_values_are_calibrated():
    ps = []
    for seed in range(120):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(12, 4, generator=g, dtype=torch.float64)
        y = torch.randn(12, 3, generator=g, dtype=torch.float64)
        t = compare_features({"x": x}, {"y": y}, measure="cka", n_perm=19, seed=seed)
        ps.append(float(t["p"].iloc[0]))
    frac = np.mean(np.array(ps) <= 0.2 + 1e-12)
    lo, hi = scipy.stats.binom.ppf([0.0005, 0.9995], 120, 0.2) / 120
    assert lo <= frac <= hi


def test_strong_dependence_gives_the_smallest_p():
    x = torch.randn(30, 5, dtype=torch.float64)
    for measure in ("cka", "cka-debiased", "rsa", "svcca", "trsa"):
        t = compare_features({"x": x}, {"y": x @ torch.randn(5, 5, dtype=torch.float64)},
                             measure=measure, n_perm=49)  # fmt: skip
        assert float(t["p"].iloc[0]) == pytest.approx(1 / 50), measure
    t = compare_features({"x": x}, {"y": x + 0.01}, measure="shape", n_perm=19)
    assert float(t["p"].iloc[0]) == pytest.approx(1 / 20)


def test_bootstrap_interval_covers_the_mean():
    """A percentile interval of the mean: coverage near the nominal level over datasets."""
    hits = 0
    for seed in range(100):
        x = torch.randn(40, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 2
        ci = bootstrap_ci(lambda i, x=x: float(x[i].mean()), 40, 200, level=0.9, seed=seed)
        hits += ci.low <= 2.0 <= ci.high
    assert 78 <= hits <= 98


def test_bootstrap_and_rsa_leave_out_copies_of_a_stimulus():
    x = torch.randn(20, 6, dtype=torch.float64)
    t = compare_features({"x": x}, {"y": x}, measure="rsa", n_boot=20)
    assert float(t["ci_low"].iloc[0]) == pytest.approx(1.0)
    assert float(t["ci_high"].iloc[0]) == pytest.approx(1.0)


def test_errors():
    with pytest.raises(CompareError, match="n_perm must be a positive int"):
        permutation_test(lambda p: 0.0, 5, 0)
    with pytest.raises(CompareError, match="level must be in"):
        bootstrap_ci(lambda i: 0.0, 5, 10, level=1.5)
    with pytest.raises(CompareError, match=r"Unknown measure 'ckaa'\. Did you mean 'cka'"):
        compare_features({"x": torch.randn(5, 2)}, {"y": torch.randn(5, 2)}, measure="ckaa")
    with pytest.raises(CompareError, match="options"):
        compare_features({"x": torch.randn(5, 2)}, {"y": torch.randn(5, 2)}, measure="cka", alpha=1)
    with pytest.raises(CompareError, match="row counts"):
        compare_features({"x": torch.randn(5, 2)}, {"y": torch.randn(6, 2)})


def test_normal_interval_is_centered_on_the_estimate():
    """Gram measures use the normal interval: estimate ± z·se of the bootstrap values."""
    from statistics import NormalDist

    x = torch.randn(40, 6, dtype=torch.float64)
    y = x[:, :3] + torch.randn(40, 3, dtype=torch.float64)
    t = compare_features({"x": x}, {"y": y}, measure="cka", n_boot=50, level=0.9)
    v, lo, hi = (float(t[c].iloc[0]) for c in ("value", "ci_low", "ci_high"))
    assert v - lo == pytest.approx(hi - v) and lo < v < hi
    ci = bootstrap_ci(lambda i: float(x[i, 0].mean()), 40, 50, level=0.9, method="normal")
    half = NormalDist().inv_cdf(0.95) * np.std(ci.samples, ddof=1)
    assert (ci.low, ci.high) == pytest.approx(
        (float(x[:, 0].mean()) - half, float(x[:, 0].mean()) + half)
    )
