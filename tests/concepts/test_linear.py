"""The torch logistic and ridge probes against scikit-learn on the same rows and folds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neuronatlas.concepts._linear import cv_logistic, cv_ridge, fit_logistic, fit_ridge, kfold

F64 = dict(dtype=torch.float64, tol=1e-9)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 8)) * rng.uniform(0.5, 3, 8) + rng.normal(size=8)
    w = rng.normal(size=8)
    return x, x @ w + rng.normal(size=240) * 2


def _folds(fold):
    return [(np.flatnonzero(fold != j), np.flatnonzero(fold == j)) for j in np.unique(fold)]


def _sk_logistic(c):
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, tol=1e-10, max_iter=10_000))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_logistic_cv_and_fit_match_sklearn(data, n_classes):
    x, t = data
    y = (t > 0).astype(int) if n_classes == 2 else np.digitize(t, [-1.5, 1.5])
    fold = kfold(len(y), 4, seed=1, y=y)
    grid = [0.05, 1.0]
    got = cv_logistic(x, y, fold, grid, **F64)
    for i, c in enumerate(grid):
        ref = cross_val_score(_sk_logistic(c), x, y, cv=_folds(fold))
        np.testing.assert_allclose(got[i], ref, atol=1e-12)
    fit = fit_logistic(x, y, 0.1, **F64)
    ref = _sk_logistic(0.1).fit(x, y)
    np.testing.assert_allclose(fit.decision(x), ref.decision_function(x), rtol=1e-5, atol=1e-5)
    assert (fit.predict(x) == ref.predict(x)).all()


def test_logistic_float32_close_to_sklearn(data):
    x, t = data
    y = t > 0
    fit = fit_logistic(x, y, 1.0)
    ref = _sk_logistic(1.0).fit(x, y)
    np.testing.assert_allclose(fit.decision(x), ref.decision_function(x), rtol=1e-2, atol=1e-2)


def test_sample_weight_matches_sklearn(data):
    x, t = data
    y = t > 1.0
    w = np.where(y, 1 - y.mean(), y.mean())
    fit = fit_logistic(x, y, 0.5, sample_weight=w, **F64)
    ref = _sk_logistic(0.5).fit(x, y, logisticregression__sample_weight=w)
    np.testing.assert_allclose(fit.decision(x), ref.decision_function(x), rtol=1e-5, atol=1e-5)


def test_ridge_cv_and_fit_match_sklearn(data):
    x, t = data
    fold = kfold(len(t), 5, seed=0)
    alphas = [0.1, 10.0, 1000.0]
    got = cv_ridge(x, t, fold, alphas)
    for i, a in enumerate(alphas):
        ref = cross_val_score(
            make_pipeline(StandardScaler(), Ridge(alpha=a)), x, t, cv=_folds(fold)
        )
        np.testing.assert_allclose(got[i], ref, rtol=1e-10, atol=1e-10)
    fit = fit_ridge(x, t, 10.0)
    ref = make_pipeline(StandardScaler(), Ridge(alpha=10.0)).fit(x, t)
    np.testing.assert_allclose(fit.predict(x), ref.predict(x), rtol=1e-10, atol=1e-10)


def test_kfold_is_stratified_and_covers_rows():
    y = np.array([0] * 30 + [1] * 10)
    fold = kfold(40, 5, seed=3, y=y)
    assert sorted(np.bincount(fold).tolist()) == [8] * 5
    assert [int((y[fold == j] == 1).sum()) for j in range(5)] == [2] * 5
