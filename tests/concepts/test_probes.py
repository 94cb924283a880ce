"""Probes: scores against scikit-learn on the same split, the control task, and the atlas API."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neuronatlas.concepts import ConceptError, control_labels, probe, probe_atlas
from neuronatlas.concepts._probes import split


def test_control_labels_are_fixed_per_type_and_follow_the_label_distribution():
    rng = np.random.default_rng(0)
    types = rng.integers(0, 2000, 20_000)
    y = (rng.random(20_000) < 0.3).astype(int)
    c = control_labels(types, y, seed=1)
    df = pd.DataFrame({"t": types, "c": c})
    assert (df.groupby("t")["c"].nunique() == 1).all()
    per_type = df.groupby("t")["c"].first()
    assert per_type.mean() == pytest.approx(0.3, abs=0.04)


def test_probe_matches_sklearn_on_the_same_split():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=500) > 0).astype(int)
    r = probe(x, y, grid=[0.01, 1.0], folds=3, seed=2)
    test = split(len(y), 0.2, 2, y)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=r.best, max_iter=1000))
    ref.fit(x[~test], y[~test])
    assert r.score == pytest.approx(ref.score(x[test], y[test]), abs=1 / test.sum())
    assert r.n_test == test.sum() and r.n_train == (~test).sum()
    assert r.shuffled_score == pytest.approx(0.5, abs=0.12)


def test_selectivity_separates_a_property_from_token_identity():
    """Rows carry a type embedding (memorizable) and a property direction (the real signal)."""
    rng = np.random.default_rng(0)
    n, n_types, d = 4000, 400, 32
    types = rng.integers(0, n_types, n)
    emb = rng.normal(size=(n_types, d))
    y = rng.random(n) < 0.5  # not a function of the type
    x = emb[types] + 1.5 * np.outer(y - 0.5, rng.normal(size=d)) + 0.3 * rng.normal(size=(n, d))
    r = probe(x, y, types=types, seed=0)
    assert r.score > 0.9
    assert r.control_score == pytest.approx(0.5, abs=0.15)  # 10 rows per type: hard to memorize
    assert r.selectivity == pytest.approx(r.score - r.control_score)
    assert r.selectivity > 0.25


def test_regression_probe_reports_r2():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = x @ np.array([1.0, -2.0, 0.0, 0.5, 0.0]) + 0.1 * rng.normal(size=300)
    r = probe(x, y, task="regression", types=rng.integers(0, 30, 300))
    assert r.metric == "r2"
    assert r.score == pytest.approx(1.0, abs=0.01)
    assert r.shuffled_score == pytest.approx(0.0, abs=0.15)


def test_probe_rejects_bad_input():
    with pytest.raises(ConceptError, match="same rows"):
        probe(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ConceptError, match="task"):
        probe(np.zeros((5, 2)), np.zeros(5), task="ranking")


def test_probe_atlas_writes_results(tiny_atlas):
    sites = ["encoder.layer.0", "encoder.layer.1.output.dense:input"]
    df = probe_atlas(tiny_atlas, "code", sites=sites, max_rows=400, grid=[0.1, 1.0], folds=3)
    manifest = json.loads((tiny_atlas / "atlas.json").read_text())
    stored = sites
    assert df["site"].tolist() == stored
    assert df["score"].between(0, 1).all() and df["control_score"].between(0, 1).all()
    np.testing.assert_allclose(df["selectivity"], df["score"] - df["control_score"])
    entry = manifest["analyses"]["probes/code"]
    assert entry["method"] == "linear" and entry["task"] == "classification"
    folder = tiny_atlas / entry["path"]
    saved = pd.read_parquet(folder / "results.parquet")
    pd.testing.assert_frame_equal(saved, df)
    weights = pd.read_parquet(folder / "weights.parquet")
    n_units = {s["name"]: s["n_units"] for s in manifest["sites"]}
    assert [len(v) for v in weights["coef"]] == [n_units[s] for s in weights["site"]]


def test_probe_atlas_errors(tiny_atlas, tmp_path):
    from neuronatlas.errors import SiteError

    with pytest.raises(SiteError, match="closest"):
        probe_atlas(tiny_atlas, "code", sites="encoder.layer.9", save=False)
    with pytest.raises(ConceptError, match="single value"):
        probe_atlas(tiny_atlas, "sql:false", save=False)
