"""Noise ceilings, a planted brain, delays, decoding and banded ridge."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch

from neuronatlas.brain import (
    banded_ridge,
    decode,
    delay_features,
    identification_accuracy,
    noise_ceiling,
    normalize_scores,
    ridge_cv,
)
from neuronatlas.errors import DataError


def test_noise_ceiling_formula_against_brute_force():
    rng = np.random.default_rng(0)
    reps = rng.standard_normal((3, 40, 5)) + rng.standard_normal((1, 40, 5))
    out = noise_ceiling(reps)
    for t in range(5):
        r = reps[:, :, t]
        n = 3
        sp = (np.var(r.sum(0)) - sum(np.var(r[i]) for i in range(n))) / (n * (n - 1))
        cc = math.sqrt(min(max(sp / np.var(r.mean(0)), 0.0), 1.0))
        assert float(out["signal_power"][t]) == pytest.approx(sp, rel=1e-12)
        assert float(out["cc_max"][t]) == pytest.approx(cc, rel=1e-12)
    reps[1, 3, :] = np.nan  # an incomplete stimulus is left out
    assert int(noise_ceiling(reps)["n_stimuli"]) == 39
    with pytest.raises(DataError, match="at least 2 repeats"):
        noise_ceiling(reps[:1])


def test_normalize_counts_no_signal_as_nan():
    out = normalize_scores([0.4, 0.3, 0.2], [0.16, 0.09, 0.04], [0.8, 0.0, float("nan")])
    assert out["r_norm"][0].item() == pytest.approx(0.5)
    assert out["r2_norm"][0].item() == pytest.approx(0.25)
    assert torch.isnan(out["r_norm"][1:]).all()


def test_planted_brain_recovers_scores_and_ceilings():
    """Responses = X w + noise with known SNR: ceilings and encoding scores match the plant.

    For a target with signal variance 1, noise variance s² per trial and N repeats, the
    trial-averaged response has CC_max² = 1 / (1 + s²/N), and a linear model of the signal can
    reach r = CC_max. Tolerances: 5 standard errors of a correlation over n stimuli,
    (1 - ρ²)/√n, plus the ridge's estimation loss, at most p / n_train of the noise variance of
    the mean relative to its total variance.
    """
    rng = np.random.default_rng(7)
    n, p, t, n_rep = 2000, 20, 24, 4
    noise_sd = np.linspace(0.5, 3.0, t)  # SNR from 4 down to 1/9 per trial
    x = rng.standard_normal((n, p))
    w = rng.standard_normal((p, t))
    signal = x @ w
    signal = (signal - signal.mean(0)) / signal.std(0)
    reps = signal[None] + noise_sd[None, None, :] * rng.standard_normal((n_rep, n, t))
    planted_cc = 1.0 / np.sqrt(1.0 + noise_sd**2 / n_rep)

    ceiling = noise_ceiling(reps)["cc_max"].numpy()
    se = (1 - planted_cc**2) / math.sqrt(n)
    tol_ceiling = 5 * se + 5 / math.sqrt(n) * (1 - planted_cc**2)
    assert np.all(np.abs(ceiling - planted_cc) <= tol_ceiling), (ceiling - planted_cc, tol_ceiling)

    res = ridge_cv(x, reps.mean(0), alphas=np.logspace(-2, 4, 7), cv=5, dtype=torch.float64)
    n_test = n // 5
    loss = p / (n - n_test) * (1 - planted_cc**2)
    tol = 5 * (1 - planted_cc**2) / math.sqrt(n_test) / math.sqrt(5) + loss
    r = res.r.numpy()
    assert np.all(np.abs(r - planted_cc) <= tol), (r - planted_cc, tol)
    assert np.all(np.abs(res.r2.numpy() - planted_cc**2) <= 2.5 * tol)
    r_norm = normalize_scores(r, res.r2.numpy(), ceiling)["r_norm"].numpy()
    assert np.all(np.abs(r_norm - 1.0) <= (tol + tol_ceiling) / planted_cc)
    # with half the repeats the ceiling drops as the formula says
    half = noise_ceiling(reps[:2])["cc_max"].numpy()
    np.testing.assert_allclose(half, 1 / np.sqrt(1 + noise_sd**2 / 2), atol=np.max(tol_ceiling) * 2)


def test_delay_features_against_brute_force():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 3))
    runs = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    delays = [-1, 0, 2]
    out = delay_features(torch.from_numpy(x), delays, runs=runs).numpy()
    ref = np.zeros((9, 9))
    for t in range(9):
        for k, d in enumerate(delays):
            s = t - d
            if 0 <= s < 9 and runs[s] == runs[t]:
                ref[t, 3 * k : 3 * k + 3] = x[s]
    np.testing.assert_array_equal(out, ref)
    with pytest.raises(DataError, match="contiguous"):
        delay_features(x, [1], runs=[0, 1, 0, 1, 0, 1, 0, 1, 0])
    with pytest.raises(DataError, match="integers"):
        delay_features(x, [0.5])


def test_delays_recover_a_lagged_response():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((600, 4))
    y = np.zeros((600, 1))
    y[3:, 0] = x[:-3] @ np.array([1.0, -1.0, 0.5, 0.0])  # responds 3 samples later
    y += 0.1 * rng.standard_normal(y.shape)
    plain = ridge_cv(x, y, alphas=[0.1, 10.0], dtype=torch.float64, refit=False)
    delayed = ridge_cv(delay_features(x, [1, 2, 3, 4]), y, alphas=[0.1, 10.0],
                       dtype=torch.float64)  # fmt: skip
    assert float(plain.r2[0]) < 0.05 and float(delayed.r2[0]) > 0.95
    lag_norms = delayed.coef[:, 0].reshape(4, 4).norm(dim=1)
    assert int(lag_norms.argmax()) == 2  # the block of lag 3


def _brute_identification(pred, true, n_way):
    n = len(pred)
    c = np.array([[np.corrcoef(pred[i], true[j])[0, 1] for j in range(n)] for i in range(n)])
    pair = np.mean([c[i, i] > c[i, j] for i in range(n) for j in range(n) if i != j])
    acc = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        wins = [all(c[i, i] > c[i, j] for j in combo) for combo in combinations(others, n_way - 1)]
        acc.append(np.mean(wins))
    return pair, float(np.mean(acc))


def test_identification_accuracy_against_enumeration():
    rng = np.random.default_rng(3)
    true = rng.standard_normal((9, 6))
    pred = true + 1.2 * rng.standard_normal((9, 6))
    for k in (2, 3, 9):
        out = identification_accuracy(pred, true, n_way=k)
        pair, nway = _brute_identification(pred, true, k)
        assert out["pairwise"] == pytest.approx(pair, abs=1e-12)
        assert out["n_way"] == pytest.approx(nway, abs=1e-12)
        assert out["chance_n_way"] == pytest.approx(1 / k)


def test_decode_identifies_stimuli_and_chance_without_signal():
    rng = np.random.default_rng(4)
    feats = rng.standard_normal((200, 12))
    brain = feats @ rng.standard_normal((12, 40)) + 0.5 * rng.standard_normal((200, 40))
    res = decode(brain, feats, alphas=[0.1, 1, 10, 100], n_way=10)
    assert res.pairwise > 0.95 and res.n_way > 0.6
    null = decode(rng.standard_normal((200, 40)), feats, alphas=[1, 100, 1e4], n_way=10)
    # chance: 0.5 and 0.1, with the sampling error of 5 folds of 40 stimuli
    assert abs(null.pairwise - 0.5) < 0.08 and abs(null.n_way - 0.1) < 0.08


def test_banded_ridge_selects_the_informative_space():
    rng = np.random.default_rng(5)
    n = 400
    a, b = rng.standard_normal((n, 8)), rng.standard_normal((n, 40))
    y = a @ rng.standard_normal((8, 6)) + 0.5 * rng.standard_normal((n, 6))
    res = banded_ridge({"a": a[:300], "b": b[:300]}, y[:300], n_iter=15,
                       test=({"a": a[300:], "b": b[300:]}, y[300:]))  # fmt: skip
    assert res.weights.shape == (2, 6)
    torch.testing.assert_close(res.weights.sum(0), torch.ones(6, dtype=torch.float64))
    assert bool((res.weights[0] > 0.9).all())
    torch.testing.assert_close(res.test_r2_split.sum(0), res.test_r2)
    assert bool((res.test_r2_split[0] > 0.8).all()) and bool(
        (res.test_r2_split[1].abs() < 0.05).all()
    )
    with pytest.raises(DataError, match="two feature spaces"):
        banded_ridge({"a": a}, y)
