"""CKA: invariances, the debiased estimator against a brute-force U-statistic, references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from neuronatlas.compare import MinibatchCKA, center_gram, cka, gram, hsic
from neuronatlas.compare._validate import CompareError


def rng_data(n=60, p=12, q=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    y = x[:, :q] @ torch.randn(q, q, generator=g, dtype=torch.float64) + 0.5 * torch.randn(
        n, q, generator=g, dtype=torch.float64
    )
    return x, y


def random_rotation(p, seed=1):
    q, r = torch.linalg.qr(torch.randn(p, p, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))  # fmt: skip
    return q * torch.sign(torch.diagonal(r))


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_invariant_to_rotation_and_isotropic_scaling(kernel, debiased):
    x, y = rng_data()
    base = float(cka(x, y, kernel=kernel, debiased=debiased))
    moved = float(cka(3.7 * x @ random_rotation(12), y, kernel=kernel, debiased=debiased))
    assert moved == pytest.approx(base, rel=1e-10, abs=1e-12)


def test_not_invariant_to_non_isotropic_scaling():
    x, y = rng_data()
    base = float(cka(x, y))
    scale = torch.linspace(0.1, 10, 12, dtype=torch.float64)
    assert abs(float(cka(x * scale, y)) - base) > 0.05


def test_linear_cka_equals_the_formula_on_brute_force_grams():
    x, y = rng_data(n=40, p=7, q=5)
    xn, yn = x.numpy(), y.numpy()
    n = len(xn)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = xn @ xn.T, yn @ yn.T  # noqa: E741
    hsic_np = lambda a, b: np.trace(a @ h @ b @ h) / (n - 1) ** 2  # noqa: E731
    ref = hsic_np(k, l) / np.sqrt(hsic_np(k, k) * hsic_np(l, l))
    assert float(cka(x, y)) == pytest.approx(ref, rel=1e-12)
    # and the feature-space form of the paper: ||Y'X||² / (||X'X|| ||Y'Y||), centered features
    xc, yc = xn - xn.mean(0), yn - yn.mean(0)
    feat = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert float(cka(x, y)) == pytest.approx(feat, rel=1e-12)
    assert float(hsic(gram(x), gram(y))) == pytest.approx(hsic_np(k, l), rel=1e-12)


def test_debiased_hsic_equals_the_u_statistic_by_brute_force():
    """Song et al. (2012): HSIC_1 = mean over ordered distinct (i,j,q,r) of
    K_ij L_ij + K_ij L_qr - 2 K_ij L_iq."""
    x, y = rng_data(n=7, p=3, q=2, seed=3)
    k, l = gram(x).numpy(), gram(y).numpy()  # noqa: E741
    terms = [k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
             for i, j, q, r in itertools.permutations(range(7), 4)]  # fmt: skip
    ref = float(np.mean(terms))
    got = float(hsic(torch.from_numpy(k), torch.from_numpy(l), debiased=True))
    assert got == pytest.approx(ref, rel=1e-10)


def test_debiased_cka_of_independent_data_is_near_zero():
    """Biased CKA of independent wide representations is far from 0; debiased is ≈ 0."""
    vals, biased = [], []
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(50, 200, generator=g, dtype=torch.float64)
        y = torch.randn(50, 200, generator=g, dtype=torch.float64)
        vals.append(float(cka(x, y, debiased=True)))
        biased.append(float(cka(x, y)))
    assert abs(np.mean(vals)) < 0.025 and np.max(np.abs(vals)) < 0.15  # sd ≈ 0.03 at n = 50
    assert np.mean(biased) > 0.5


def test_rbf_matches_the_papers_numpy_code():
    x, y = rng_data(n=30, p=6, q=4, seed=5)

    def gram_rbf(a, threshold):  # Kornblith et al.'s reference implementation
        dot = a @ a.T
        sq = np.diag(dot)
        d = -2 * dot + sq[:, None] + sq[None, :]
        return np.exp(-d / (2 * threshold**2 * np.median(d)))

    def center(g):
        means = g.mean(0)
        means -= means.mean() / 2
        return g - means[:, None] - means[None, :]

    for threshold in (0.5, 1.0, 2.0):
        k, l = center(gram_rbf(x.numpy(), threshold)), center(gram_rbf(y.numpy(), threshold))  # noqa: E741
        ref = (k * l).sum() / np.sqrt((k * k).sum() * (l * l).sum())
        assert float(cka(x, y, kernel="rbf", threshold=threshold)) == pytest.approx(ref, rel=1e-10)


def test_gram_accumulates_over_feature_chunks():
    x, _ = rng_data(n=20, p=10)
    whole = gram(x)
    chunked = gram(iter([x[:, :3], x[:, 3:7], x[:, 7:]]))
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)
    with pytest.raises(CompareError, match="Every block must hold all stimuli"):
        gram(iter([x[:, :3], x[:5, 3:]]))


def test_minibatch_cka_matches_its_definition():
    x, y = rng_data(n=96, p=8, q=6, seed=2)
    mb = MinibatchCKA(n_a=1, n_b=2)
    parts = []
    for b in range(3):
        s = slice(32 * b, 32 * (b + 1))
        mb.update([x[s]], [y[s], x[s] * 2])
        parts.append([float(hsic(gram(x[s]), gram(y[s]), debiased=True)),
                      float(hsic(gram(x[s]), gram(x[s]), debiased=True)),
                      float(hsic(gram(y[s]), gram(y[s]), debiased=True))])  # fmt: skip
    xy, xx, yy = np.mean(parts, 0)
    res = mb.result()
    assert float(res[0, 0]) == pytest.approx(xy / np.sqrt(xx * yy), rel=1e-10)
    assert float(res[0, 1]) == pytest.approx(1.0, rel=1e-12)
    # one minibatch holding every stimulus = debiased CKA
    one = MinibatchCKA(1, 1).update([x], [y]).result()
    assert float(one[0, 0]) == pytest.approx(float(cka(x, y, debiased=True)), rel=1e-10)


def test_errors():
    x, y = rng_data()
    with pytest.raises(CompareError, match="same stimuli"):
        cka(x, y[:-1])
    with pytest.raises(CompareError, match="kernel must be"):
        cka(x, y, kernel="poly")
    with pytest.raises(CompareError, match="non-finite"):
        cka(x.clone().fill_(float("nan")), y)
    with pytest.raises(CompareError, match="at least 4"):
        center_gram(torch.eye(3, dtype=torch.float64), debiased=True)


def test_token_cka_streams_the_store(tiny_atlas):
    """Minibatch CKA over tokens equals the definition computed from the whole store."""
    from neuronatlas.compare import token_cka

    store = tiny_atlas.store()
    sites = ["encoder.layer.0", "encoder.layer.1.output.dense:input"]
    full = {s: torch.from_numpy(store.read(s)).double() for s in sites}
    n = store.n_rows
    k = 16
    t = token_cka(tiny_atlas, sites, batch_size=k)
    assert t["n_tokens"].iloc[0] == (n // k) * k and t["n_batches"].iloc[0] == n // k
    ref = MinibatchCKA(2, 2)
    for b in range(n // k):
        xs = [full[s][b * k : (b + 1) * k] for s in sites]
        ref.update(xs, xs)
    np.testing.assert_allclose(t["value"].to_numpy(), ref.result().numpy().ravel(), rtol=1e-10)
    one = token_cka(tiny_atlas, sites, batch_size=n)
    ab = one[(one.site_a == sites[0]) & (one.site_b == sites[1])]["value"].iloc[0]
    assert ab == pytest.approx(float(cka(full[sites[0]], full[sites[1]], debiased=True)), rel=1e-10)
    with pytest.raises(CompareError, match="fewer than one minibatch"):
        token_cka(tiny_atlas, sites, batch_size=n + 1)


def test_token_cka_across_many_store_chunks(tiny_atlas, tmp_path):
    """Minibatches spanning chunk boundaries (chunks of 7 rows, batches of 16)."""
    import shutil

    from neuronatlas.compare import token_cka
    from neuronatlas.store import ActivationStore

    copy = tmp_path / "a"
    shutil.copytree(tiny_atlas.path, copy)
    src = tiny_atlas.store()
    idx = src.index().to_pandas()
    dst = ActivationStore.create(copy / "store", src.sites, chunk_rows=7, overwrite=True)
    dst.append({s: src.read(s) for s in src.sites}, doc=idx["doc"], pos=idx["pos"])
    dst.close()
    a = token_cka(tiny_atlas, batch_size=16, max_rows=100)
    b = token_cka(copy, batch_size=16, max_rows=100)
    assert a["n_tokens"].iloc[0] == 96
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-12)
