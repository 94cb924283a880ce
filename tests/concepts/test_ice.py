"""ICE on a small CNN trained here on scikit-learn's digits: hooks, fidelity, heat-maps."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from neuronatlas.concepts import (
    ConceptError,
    concept_maps,
    fidelity,
    fidelity_table,
    fit_concepts,
    save_heatmaps,
    site_rows,
)
from neuronatlas.intervene import intervene


@pytest.fixture(scope="module")
def digits_cnn():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target)
    model = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 8, 3, padding=1),
            relu1=nn.ReLU(),
            pool=nn.MaxPool2d(2),
            conv2=nn.Conv2d(8, 16, 3, padding=1),
            relu2=nn.ReLU(),
            flat=nn.Flatten(),
            fc=nn.Linear(16 * 4 * 4, 10),
        )
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        for idx in torch.randperm(1200, generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval(), x[:1200], x[1200:], y[1200:]


def test_feature_map_replacement_is_exact_and_removed(digits_cnn):
    model, _, xte, _ = digits_cnn
    with torch.no_grad():
        ref = model(xte)
        with intervene(model, {"relu2": lambda t, ctx: t}):
            same = model(xte)
        with intervene(model, {"fc:input": lambda t, ctx: torch.zeros_like(t)}):
            zeroed = model(xte)
    torch.testing.assert_close(same, ref, rtol=0, atol=0)
    torch.testing.assert_close(zeroed, model.fc.bias.expand_as(ref))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_site_rows_are_locations_by_channels(digits_cnn):
    model, xtr, _, _ = digits_cnn
    rows = site_rows(model, "relu2", xtr[:3])
    with torch.no_grad():
        maps = model[:5](xtr[:3])  # (3, 16, 4, 4)
    ref = maps.permute(0, 2, 3, 1).reshape(-1, 16).numpy()
    np.testing.assert_allclose(rows, ref, rtol=1e-6, atol=1e-6)


def test_fidelity_full_rank_pca_is_the_model_and_nmf_improves_with_concepts(digits_cnn):
    model, xtr, xte, yte = digits_cnn
    pca = fit_concepts(model, "relu2", xtr, method="pca", n_concepts=16)
    f = fidelity(model, "relu2", pca, xte, yte)
    assert f["original_accuracy"] > 0.85
    assert f["agreement"] == 1.0 and f["accuracy"] == f["original_accuracy"]
    assert f["relative_error"] == pytest.approx(0.0, abs=1e-5)
    table = fidelity_table(
        model, "relu2", xtr[:300], xte, yte, methods=("nmf",), n_concepts=(2, 10)
    )
    assert table[["method", "n_concepts"]].values.tolist() == [["nmf", 2], ["nmf", 10]]
    nmf = table[table["method"] == "nmf"].set_index("n_concepts")
    assert nmf.loc[10, "relative_error"] < nmf.loc[2, "relative_error"]
    assert nmf.loc[10, "agreement"] > nmf.loc[2, "agreement"]
    assert nmf.loc[10, "agreement"] > 0.85


def test_concept_maps_upsample_the_scores(digits_cnn, tmp_path):
    model, xtr, xte, _ = digits_cnn
    nmf = fit_concepts(model, "relu2", xtr, method="nmf-torch", n_concepts=3, max_iter=100)
    maps = concept_maps(model, "relu2", nmf, xte[:2])
    assert maps.shape == (2, 3, 8, 8) and (maps >= -1e-6).all()
    rows = site_rows(model, "relu2", xte[:2])
    scores = nmf.transform(rows).reshape(2, 4, 4, 3).transpose(0, 3, 1, 2)
    # bilinear 2x upsampling keeps the mean of each map (up to the border)
    np.testing.assert_allclose(maps.mean((2, 3)), scores.mean((2, 3)), rtol=0.15)
    png = save_heatmaps(xte[:2].numpy(), maps, tmp_path / "maps.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConceptError, match="non-negative"):
        fit_concepts(model, "conv2", xtr[:50], method="nmf", n_concepts=2)
