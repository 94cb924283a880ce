"""Concept decompositions: the torch NMF against scikit-learn's objective; NMF on an atlas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.decomposition import NMF

from neuronatlas.concepts import ConceptError, TorchNMF, concepts_atlas, make_decomposition
from neuronatlas.concepts._nmf import nmf_objective


@pytest.fixture
def low_rank():
    rng = np.random.default_rng(0)
    return (rng.random((1000, 5)) @ rng.random((5, 30)) + 0.05 * rng.random((1000, 30))).astype(
        np.float32
    )


def test_torch_mu_matches_sklearn_mu_objective(low_rank):
    """Same start, same multiplicative updates: the same objective after 100 iterations."""
    x = low_rank.astype(np.float64)
    rng = np.random.default_rng(1)
    s0, p0 = rng.random((len(x), 5)), rng.random((5, x.shape[1]))
    sk = NMF(5, init="custom", solver="mu", max_iter=100, tol=0)
    s_ref = sk.fit_transform(x, W=s0.copy(), H=p0.copy())
    ref = nmf_objective(x, s_ref, sk.components_)
    ours = TorchNMF(5, max_iter=100, dtype=torch.float64).fit(x, init=(s0, p0))
    assert ours.reconstruction_err_**2 / 2 == pytest.approx(ref, rel=1e-6)
    np.testing.assert_allclose(ours.components_, sk.components_, rtol=1e-5, atol=1e-8)
    assert (ours.transform(x) >= 0).all()


def test_minibatch_nmf_reaches_sklearn_quality(low_rank):
    x = low_rank
    ref = NMF(5, init="nndsvda", max_iter=1000, random_state=0).fit(x)
    ref_obj = ref.reconstruction_err_**2 / 2
    ours = TorchNMF(5, max_iter=30, batch_size=250).fit(x)  # 30 epochs of 250-row batches
    obj = nmf_objective(x, ours.transform(x), ours.components_)
    # the online fit gets within 2x of scikit-learn's full-batch coordinate-descent optimum
    # (scikit-learn's own MiniBatchNMF with the same batches and epochs stays far above)
    assert ref_obj <= obj <= 2 * ref_obj


def test_decompositions_invert(low_rank):
    x = low_rank[:300]
    for method in ("pca", "kmeans"):
        d = make_decomposition(method, 30 if method == "pca" else 300).fit(x)
        np.testing.assert_allclose(d.inverse_transform(d.transform(x)), x, atol=1e-4)
    with pytest.raises(ConceptError, match="non-negative"):
        TorchNMF(2).fit(-x)
    with pytest.raises(ConceptError, match="Unknown decomposition"):
        make_decomposition("ica", 3)


def test_concepts_atlas_streams_the_store(tiny_atlas):
    from neuronatlas.store import ActivationStore

    site = "encoder.layer.1.output.dense:input"
    comps, top, summary = concepts_atlas(tiny_atlas, site, n_concepts=4, batch_size=64, top_k=3)
    store = ActivationStore.open(tiny_atlas / "store")
    x = store.read(site).astype(np.float64)
    xp = np.clip(x, 0, None)
    p = np.stack(comps["vector"].to_numpy()).astype(np.float64)
    assert p.shape == (4, x.shape[1]) and (p >= 0).all()
    assert summary["n_rows"] == len(x)
    assert summary["clipped_fraction"] == pytest.approx(((x - xp) ** 2).sum() / (x**2).sum())
    assert 0 < summary["relative_error"] < 1
    # the top tokens of each concept are the rows with the highest scores (scores recomputed)
    nmf = TorchNMF(4)
    nmf._set(torch.as_tensor(p, dtype=torch.float32))
    scores = nmf._scores(torch.as_tensor(xp, dtype=torch.float32), nmf._p, nmf.inner).numpy()
    index = store.index().to_pandas()
    for c in range(4):
        got = top[top["concept"] == c].sort_values("rank")
        best = np.sort(scores[:, c])[::-1][:3]
        np.testing.assert_allclose(got["score"], best, rtol=1e-4)
        rows = index.set_index(["doc", "pos"]).loc[list(zip(got["doc"], got["pos"], strict=True))][
            "row"
        ]
        np.testing.assert_allclose(scores[rows.to_numpy(), c], best, rtol=1e-4)
    entry = pd.read_json(tiny_atlas / "atlas.json", typ="series")["analyses"]
    assert any(k.startswith("concepts/nmf-4-") for k in entry)
