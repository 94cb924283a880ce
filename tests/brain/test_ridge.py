"""Ridge with a cross-validated alpha per target, against himalaya and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronatlas.brain import RidgeEncoder, kfold_splits, ridge_cv, score_predictions
from neuronatlas.errors import DataError

ALPHAS = np.logspace(-2, 5, 8)


def _data(n, p, t, seed=0, noise=2.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) + 0.3
    w = rng.standard_normal((p, t)) * rng.uniform(0, 1, t)
    y = x @ w + noise * rng.standard_normal((n, t)) + 5.0
    return x, y


@pytest.fixture
def himalaya_numpy():
    from himalaya.backend import get_backend, set_backend

    before = get_backend().name
    set_backend("numpy")
    yield
    set_backend(before)


@pytest.mark.parametrize(("n", "p"), [(150, 30), (60, 200)])
def test_matches_himalaya_float64(n, p, himalaya_numpy):
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import r2_score

    x, y = _data(n, p, 40)
    res = ridge_cv(x, y, alphas=ALPHAS, cv=5, dtype=torch.float64)
    cls = RidgeCV if n >= p else KernelRidgeCV
    ref = cls(alphas=ALPHAS, cv=5, fit_intercept=True, solver_params={"score_func": r2_score})
    ref.fit(x, y)
    np.testing.assert_allclose(res.best_alpha.numpy(), ref.best_alphas_, rtol=1e-9)
    # himalaya's cv_scores_ include its tie-breaking slope 1e-10 * log(alpha)
    ref_scores = ref.cv_scores_ - 1e-10 * np.log(ref.best_alphas_)
    np.testing.assert_allclose(res.r2.numpy(), ref_scores, rtol=1e-6, atol=1e-12)
    pred = x @ res.coef.numpy() + res.intercept.numpy()
    np.testing.assert_allclose(pred, ref.predict(x), rtol=1e-6, atol=1e-9 * np.abs(pred).max())
    assert res.info["form"] == ("primal" if n >= p else "kernel")


def test_pearson_selection_matches_himalaya(himalaya_numpy):
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import correlation_score

    x, y = _data(120, 20, 25, seed=3, noise=4.0)
    res = ridge_cv(x, y, alphas=ALPHAS, cv=4, select="pearson", dtype=torch.float64)
    ref = RidgeCV(alphas=ALPHAS, cv=4, fit_intercept=True,
                  solver_params={"score_func": correlation_score}).fit(x, y)  # fmt: skip
    np.testing.assert_allclose(res.best_alpha.numpy(), ref.best_alphas_, rtol=1e-9)
    np.testing.assert_allclose(
        res.r.numpy(), ref.cv_scores_ - 1e-10 * np.log(ref.best_alphas_), rtol=1e-6, atol=1e-12
    )


def test_matches_sklearn_grid():
    """Brute force with scikit-learn: Ridge per fold and alpha, alpha picked per target."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold

    x, y = _data(100, 12, 7, seed=1, noise=3.0)
    res = ridge_cv(x, y, alphas=ALPHAS, cv=5, dtype=torch.float64)
    folds = list(KFold(5).split(x))
    scores = np.zeros((5, len(ALPHAS), y.shape[1]))
    for f, (tr, te) in enumerate(folds):
        for a, alpha in enumerate(ALPHAS):
            pred = Ridge(alpha=alpha).fit(x[tr], y[tr]).predict(x[te])
            scores[f, a] = r2_score(y[te], pred, multioutput="raw_values")
    best = scores.mean(0).argmax(0)
    np.testing.assert_array_equal(res.best_index.numpy(), best)
    np.testing.assert_allclose(res.fold_r2.numpy(), scores, rtol=1e-6, atol=1e-12)
    for t in range(y.shape[1]):
        ref = Ridge(alpha=ALPHAS[best[t]]).fit(x, y[:, t])
        np.testing.assert_allclose(res.coef[:, t].numpy(), ref.coef_, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(float(res.intercept[t]), ref.intercept_, rtol=1e-6)
    assert [te.tolist() for _, te in kfold_splits(100, 5)] == [te.tolist() for _, te in folds]


def test_matches_sklearn_ridgecv_per_target():
    """scikit-learn's RidgeCV with cv=5 (one target at a time: its alpha_per_target needs LOO)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    x, y = _data(80, 6, 4, seed=6, noise=3.0)
    res = ridge_cv(x, y, alphas=ALPHAS, cv=5, dtype=torch.float64)
    for t in range(y.shape[1]):
        ref = RidgeCV(alphas=ALPHAS, cv=KFold(5), scoring="r2").fit(x, y[:, t])
        assert float(res.best_alpha[t]) == pytest.approx(ref.alpha_, rel=1e-12)
        assert float(res.r2[t]) == pytest.approx(ref.best_score_, rel=1e-6)
        np.testing.assert_allclose(res.coef[:, t].numpy(), ref.coef_, rtol=1e-6, atol=1e-12)


def test_blocks_and_float32_agree():
    x, y = _data(90, 15, 33, seed=2)
    full = ridge_cv(x, y, alphas=ALPHAS, dtype=torch.float64)
    small = ridge_cv(x, y, alphas=ALPHAS, dtype=torch.float64, memory_budget=1)
    assert small.info["block"] == 1 and full.info["block"] == 33
    torch.testing.assert_close(small.fold_r2, full.fold_r2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(small.coef, full.coef, rtol=1e-10, atol=1e-12)
    from sklearn.model_selection import KFold

    splitter = KFold(3, shuffle=True, random_state=0)
    by_splitter = ridge_cv(x, y, alphas=ALPHAS, cv=splitter, dtype=torch.float64)
    by_list = ridge_cv(x, y, alphas=ALPHAS, cv=list(splitter.split(x)), dtype=torch.float64)
    torch.testing.assert_close(by_splitter.fold_r2, by_list.fold_r2, rtol=0, atol=0)
    assert by_splitter.fold_r2.shape == (3, len(ALPHAS), 33)
    f32 = ridge_cv(x, y, alphas=ALPHAS, dtype=torch.float32)
    torch.testing.assert_close(f32.r2.double(), full.r2, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(f32.r.double(), full.r, rtol=1e-3, atol=1e-4)


def test_score_predictions_against_numpy():
    rng = np.random.default_rng(0)
    y = rng.standard_normal((50, 4))
    p = y + rng.standard_normal((50, 4))
    p[:, 3] = 1.0  # constant prediction: r = 0
    r2, r = score_predictions(torch.from_numpy(y), torch.from_numpy(p))
    ref_r2 = 1 - ((y - p) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    ref_r = [np.corrcoef(y[:, i], p[:, i])[0, 1] for i in range(3)] + [0.0]
    np.testing.assert_allclose(r2.numpy(), ref_r2, rtol=1e-12)
    np.testing.assert_allclose(r.numpy(), ref_r, rtol=1e-12, atol=1e-15)


def test_encoder_predict_and_score():
    x, y = _data(200, 10, 5, seed=4, noise=0.5)
    model = RidgeEncoder(alphas=ALPHAS, dtype=torch.float64).fit(x[:150], y[:150])
    scores = model.score(x[150:], y[150:])
    r2, _ = score_predictions(torch.from_numpy(y[150:]), model.predict(x[150:]))
    torch.testing.assert_close(scores["r2"], r2)
    assert model.best_alpha_.shape == (5,)
    assert bool((scores["r"] > 0.5).all()) and bool((scores["r"] <= 1).all())


def test_bad_input_is_a_clear_error():
    x, y = _data(30, 4, 2)
    with pytest.raises(DataError, match="one row per stimulus"):
        ridge_cv(x, y[:-1])
    bad = y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        ridge_cv(x, bad)
    with pytest.raises(DataError, match="positive"):
        ridge_cv(x, y, alphas=[0.0, 1.0])
    with pytest.raises(DataError, match="folds"):
        ridge_cv(x, y, cv=1)
    with pytest.raises(DataError, match="not fitted"):
        RidgeEncoder().predict(x)
