"""Streaming correlations against numpy, their merge and state, and unit_correlations' passes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn
from units._planted import PlantedLM, planted_batches

from neuronatlas.errors import AccumulatorError, DataError, NeuronAtlasError
from neuronatlas.units import CrossCorrelation, random_rotation, unit_correlations


def correlated(n=500, n_a=6, n_b=5, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    a = z @ rng.standard_normal((3, n_a)) + 0.5 * rng.standard_normal((n, n_a)) + 100.0
    b = z @ rng.standard_normal((3, n_b)) + 0.5 * rng.standard_normal((n, n_b)) - 7.0
    return a, b


def feed(a, b, sizes, **kwargs):
    cc = CrossCorrelation(a.shape[1], b.shape[1], **kwargs)
    start = 0
    for size in sizes:
        cc.update(
            torch.as_tensor(a[start : start + size]), torch.as_tensor(b[start : start + size])
        )
        start += size
    return cc


def test_correlations_match_numpy_corrcoef_whatever_the_batching():
    a, b = correlated()
    want = np.corrcoef(a.T, b.T)[: a.shape[1], a.shape[1] :]
    for sizes in ([500], [1, 499], [7] * 71 + [3], [250, 0, 250]):
        got = feed(a, b, sizes).corr().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_float32_sums_are_close_to_float64():
    a, b = correlated()
    want = np.corrcoef(a.T, b.T)[: a.shape[1], a.shape[1] :]
    got = feed(a.astype(np.float32), b.astype(np.float32), [100] * 5, dtype=torch.float32).corr()
    np.testing.assert_allclose(got.numpy(), want, atol=2e-5)


def test_merge_and_state_round_trip_equal_one_pass():
    a, b = correlated(seed=1)
    kw = {"groups_a": [2, 4], "groups_b": [5]}
    whole = feed(a, b, [100] * 5, **kw)
    left, right = feed(a[:230], b[:230], [100, 130], **kw), feed(a[230:], b[230:], [270], **kw)
    buf = io.BytesIO()
    torch.save(right.state_dict(), buf)
    buf.seek(0)
    right = CrossCorrelation.from_state_dict(torch.load(buf, weights_only=True))
    merged = left.merge(right)
    assert merged.n_ == 500
    np.testing.assert_allclose(merged.corr().numpy(), whole.corr().numpy(), rtol=1e-10, atol=1e-12)
    for g, h in zip(merged.g_a_ + merged.g_b_, whole.g_a_ + whole.g_b_, strict=True):
        np.testing.assert_allclose(g.numpy(), h.numpy(), rtol=1e-10, atol=1e-9)


def test_rotated_baseline_equals_correlations_with_explicitly_rotated_units():
    a, b = correlated(n=300, n_a=5, n_b=7, seed=2)
    cc = feed(a, b, [100] * 3, groups_a=[2, 3], groups_b=[3, 4])
    seed = 4
    rb = np.concatenate(
        [b[:, :3] @ random_rotation(3, seed * 1009).numpy(),
         b[:, 3:] @ random_rotation(4, seed * 1009 + 1).numpy()], axis=1,
    )  # fmt: skip
    want_a = np.corrcoef(a.T, rb.T)[:5, 5:].max(1)
    np.testing.assert_allclose(cc.max_rotated("a", seed).numpy(), want_a, rtol=1e-9)
    ra = np.concatenate(
        [a[:, :2] @ random_rotation(2, seed * 1009).numpy(),
         a[:, 2:] @ random_rotation(3, seed * 1009 + 1).numpy()], axis=1,
    )  # fmt: skip
    want_b = np.corrcoef(b.T, ra.T)[:7, 7:].max(1)
    np.testing.assert_allclose(cc.max_rotated("b", seed).numpy(), want_b, rtol=1e-9)


def test_constant_units_have_no_correlation():
    a, b = correlated(n=50)
    a[:, 0] = 3.0
    corr = feed(a, b, [50]).corr().numpy()
    assert np.isnan(corr[0]).all() and np.isfinite(corr[1:]).all()


def test_cross_correlation_errors():
    with pytest.raises(AccumulatorError, match="n_a"):
        CrossCorrelation(0, 3)
    with pytest.raises(AccumulatorError, match="summing to 4"):
        CrossCorrelation(4, 3, groups_a=[1, 2])
    cc = CrossCorrelation(2, 3)
    with pytest.raises(AccumulatorError, match="same rows"):
        cc.update(torch.zeros(4, 2), torch.zeros(5, 3))
    with pytest.raises(AccumulatorError, match="non-finite"):
        cc.update(torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 3))
    with pytest.raises(AccumulatorError, match="different shapes"):
        cc.merge(CrossCorrelation(3, 3))
    with pytest.raises(AccumulatorError, match="groups_a and groups_b"):
        cc.max_rotated("a", 0)


@pytest.fixture(scope="module")
def two_models(corpus):
    return PlantedLM(seed=0).eval(), PlantedLM(seed=1).eval(), planted_batches(*corpus)


def test_several_passes_within_a_small_budget_equal_one_pass(two_models):
    a, b, batches = two_models
    batches = batches[:2]
    one = unit_correlations(a, b, batches, "neurons,resid", "neurons,resid")
    # 96 units of b x 8 bytes: a budget below 64 x 768 bytes forces one pass per site of a
    two = unit_correlations(a, b, lambda: iter(batches), "neurons,resid", "neurons,resid",
                            max_bytes=40_000)  # fmt: skip
    assert (one.passes, two.passes) == (1, 2)
    for x, y in ((one.a, two.a), (one.b, two.b)):
        np.testing.assert_allclose(x.max_corr, y.max_corr, rtol=1e-10, equal_nan=True)
        np.testing.assert_allclose(x.baseline_corr, y.baseline_corr, rtol=1e-10, equal_nan=True)
        assert x.match_unit.equals(y.match_unit) and x.match_site.equals(y.match_site)
    assert one.n_tokens == sum(int(batch["attention_mask"].sum()) for batch in batches)


def test_unit_correlations_match_numpy_on_recorded_activations():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(3, 6), nn.Tanh())
    b = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    xs = [torch.randn(40, 3) for _ in range(3)]
    res = unit_correlations(a, b, xs, "1", "1", baseline=False)
    x = torch.cat(xs)
    with torch.no_grad():
        ha, hb = a(x).double().numpy(), b(x).double().numpy()
    corr = np.corrcoef(ha.T, hb.T)[:6, 6:]
    np.testing.assert_allclose(res.a.max_corr, corr.max(1), rtol=1e-12)
    assert res.a.match_unit.tolist() == corr.argmax(1).tolist()
    np.testing.assert_allclose(res.b.max_corr, corr.max(0), rtol=1e-12)
    assert res.b.match_unit.tolist() == corr.argmax(0).tolist()
    assert "label_universal" not in res.a


def test_unit_correlations_errors(two_models):
    a, b, batches = two_models
    with pytest.raises(DataError, match="one-shot iterator"):
        unit_correlations(a, b, iter(batches), "neurons,resid", "neurons", max_bytes=1000)
    with pytest.raises(DataError, match="no batches"):
        unit_correlations(a, b, [], "neurons", "neurons")
    with pytest.raises(NeuronAtlasError, match="neurons"):
        unit_correlations(a, b, batches, "neuronz", "neurons")
    from neuronatlas.data import tensor_batches

    mixed = [batches[0], next(tensor_batches([batches[1]]))]
    with pytest.raises(DataError, match="both Batch objects and raw model inputs"):
        unit_correlations(a, b, mixed, "neurons", "neurons")
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    with pytest.raises(DataError, match="expects batches"):
        unit_correlations(seq, seq, 3, "1", "1")
