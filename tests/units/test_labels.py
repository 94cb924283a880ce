"""label_units: rules at their thresholds, overrides, missing columns, NaN scores; densities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuronatlas.units import DEFAULT_THRESHOLDS, LABELS, TaxonomyError, label_units, layer_density


def table():
    nan = np.nan
    return pd.DataFrame(
        {
            "site": ["s0", "s0", "s0", "s1", "s1", "s1"],
            "layer": [0, 0, 0, 1, 1, 1],
            "unit": [0, 1, 2, 0, 1, 2],
            "count": [100, 100, 0, 100, 100, 100],
            "max": [0.0, 1e-9, nan, 3.0, 150.0, 99.0],
            "frac_active": [0.0, 0.01, nan, 0.5, 0.2, 0.3],
            "fire_count": [0, 9, 0, 50, 10, 400],
            "tok_f1": [0.0, 0.9, nan, 0.5, 0.49, 0.1],
            "bigram_f1": [0.0, 0.95, nan, 0.69, 0.7, 0.3],
            "pos_eta2": [nan, 0.5, nan, 0.4999, 0.2, 1.0],
            "absmax": [0.0, 1e-9, nan, 3.0, 150.0, 99.0],
            "massive_ratio": [nan, 10.0, nan, 1e4, 1000.0, 1e5],
        }
    )


def test_each_rule_at_and_around_its_threshold():
    out, info = label_units(table())
    assert out["label_dead"].tolist() == [True, False, False, False, False, False]
    # unit 1 has F1 0.9 but only 9 fires (< token_min_fires = 10)
    assert out["label_token"].tolist() == [False, False, False, True, False, False]
    # bigram needs F1 >= 0.5 and a gain >= 0.2 over the token F1 (0.69 - 0.5 < 0.2 <= 0.7 - 0.49)
    assert out["label_bigram"].tolist() == [False, False, False, False, True, False]
    assert out["label_positional"].tolist() == [False, True, False, False, False, True]
    assert out["label_massive"].tolist() == [False, False, False, False, True, False]
    assert set(info["labels"]) == {f"label_{s.name}" for s in LABELS} - {"label_universal"}
    assert info["thresholds"] == DEFAULT_THRESHOLDS
    assert info["labels"]["label_massive"]["rule"].startswith(
        "absmax > 100 and massive_ratio >= 1000"
    )
    assert out["layer_density"].tolist() == pytest.approx([0.005] * 3 + [1 / 3] * 3)


def test_overrides_change_the_labels_and_are_reported():
    out, info = label_units(table(), thresholds={"positional_eta2": 0.49, "massive_abs": 50})
    assert out["label_positional"].tolist() == [False, True, False, True, False, True]
    assert out["label_massive"].tolist() == [False, False, False, False, True, True]
    assert info["thresholds"]["positional_eta2"] == 0.49
    assert info["labels"]["label_massive"]["thresholds"] == {
        "massive_abs": 50.0,
        "massive_ratio": 1000.0,
    }


def test_missing_columns_skip_a_label_and_the_input_is_not_modified():
    t = table().drop(columns=["bigram_f1", "absmax"])
    before = t.copy()
    out, info = label_units(t)
    assert "label_bigram" not in out and "label_massive" not in out
    assert info["skipped"]["label_bigram"] == "missing columns: bigram_f1"
    assert info["skipped"]["label_massive"] == "missing columns: absmax"
    pd.testing.assert_frame_equal(t, before)


def test_bad_thresholds_and_tables_are_refused_with_the_known_names():
    with pytest.raises(TaxonomyError, match="Did you mean 'token_f1'"):
        label_units(table(), thresholds={"token_f": 0.3})
    with pytest.raises(TaxonomyError, match="finite number"):
        label_units(table(), thresholds={"token_f1": "high"})
    with pytest.raises(TaxonomyError, match="finite number"):
        label_units(table(), thresholds={"token_f1": float("nan")})
    with pytest.raises(TaxonomyError, match="DataFrame"):
        label_units({"max": [1.0]})


def test_layer_density_is_the_mean_active_fraction_per_site():
    out, _ = label_units(table())
    dens = layer_density(out)
    assert dens.columns.tolist() == ["site", "layer", "n_units", "density", "frac_dead"]
    assert dens["density"].tolist() == pytest.approx([0.005, 1 / 3])
    assert dens["frac_dead"].tolist() == pytest.approx([1 / 3, 0.0])
    with pytest.raises(TaxonomyError, match="frac_active"):
        layer_density(pd.DataFrame({"site": ["a"]}))
