"""The taxonomy finds every planted unit of PlantedLM and labels no control unit."""

from __future__ import annotations

import pytest
from units._planted import BIGRAM, EXPECTED, MASSIVE, POS_RANGE, TOKEN, PlantedLM, planted_batches

from neuronatlas.units import label_units, survey_units, unit_correlations


@pytest.fixture(scope="module")
def survey(planted, corpus):
    return survey_units(
        planted, planted_batches(*corpus), sites="neurons,resid", top_k=5, context=2
    )


@pytest.fixture(scope="module")
def labelled(survey):
    table, info = label_units(survey.units)
    return table, info


def test_every_planted_unit_gets_exactly_its_labels_and_controls_none(labelled):
    table, info = labelled
    labels = [c for c in table.columns if c.startswith("label_")]
    assert set(labels) == set(info["labels"]) == {
        "label_dead", "label_token", "label_bigram", "label_positional", "label_massive",
    }  # fmt: skip
    assert info["skipped"] == {"label_universal": "missing columns: universal_excess"}
    got = {
        (site, unit): {c for c in labels if flag[c]}
        for site, unit, flag in zip(
            table["site"], table["unit"], table[labels].to_dict("records"), strict=True
        )
    }
    for key, want in EXPECTED.items():
        assert got[key] == want, key
    controls = {k: v for k, v in got.items() if k not in EXPECTED and v}
    assert controls == {}


def test_planted_scores_name_the_right_token_bigram_and_positions(survey):
    u = survey.units.set_index(["site", "unit"])
    tok = u.loc[("neurons", 1)]
    assert (tok.tok_id, tok.tok_f1, tok.tok_precision, tok.tok_recall) == (TOKEN, 1.0, 1.0, 1.0)
    big = u.loc[("neurons", 2)]
    assert (big.bigram_prev_id, big.bigram_id) == BIGRAM
    assert big.bigram_f1 == pytest.approx(1.0)
    assert (
        big.tok_id == BIGRAM[1] and big.tok_f1 < 0.4
    )  # the second token alone is a poor predictor
    pos = u.loc[("neurons", 3)]
    assert POS_RANGE[0] <= pos.pos_peak < POS_RANGE[1]
    assert (pos.pos_lo, pos.pos_hi) == (POS_RANGE[0], POS_RANGE[1] - 1)
    massive = u.loc[("resid", 0)]
    assert massive.absmax == MASSIVE and massive.absmax_pos == 0 and massive.absmax_doc == 0
    assert massive.massive_pos_mode == 0 and massive.massive_pos_frac == pytest.approx(1.0)
    assert massive.massive_seq_frac == pytest.approx(1.0)
    # padding holds 5000 / -7000: no statistic may have read it
    assert u["absmax"].max() == MASSIVE
    assert (u.loc["neurons", "max"] < 100).all()


def test_survey_tables_trace_every_exemplar_to_its_token(survey, corpus):
    ids, mask = corpus
    assert len(survey.tokens) == int(mask.sum())  # doc ids run on across the input batches
    assert survey.tokens.doc.max() == len(ids) - 1
    ex = survey.exemplars
    assert (ex.token_id.to_numpy() == ids.numpy()[ex.doc.to_numpy(), ex.pos.to_numpy()]).all()
    tok = ex[(ex.site == "neurons") & (ex.unit == 1)]
    assert (tok.token_id == TOKEN).all() and len(tok) == 5


def test_duplicated_units_of_a_second_model_are_universal_and_nothing_else(planted, corpus):
    other = PlantedLM(seed=1).eval()  # same planted units, other random controls
    res = unit_correlations(planted, other, planted_batches(*corpus), "neurons", "neurons")
    a = res.a.set_index("unit")
    assert sorted(a.index[a.label_universal]) == [1, 2, 3]
    assert (a.loc[[1, 2, 3], "match_unit"] == [1, 2, 3]).all()
    assert a.loc[[1, 2], "max_corr"].tolist() == pytest.approx([1.0, 1.0])
    assert a.loc[3, "max_corr"] > 0.9  # its small token-dependent noise differs between the models
    assert a.loc[0, "max_corr"] != a.loc[0, "max_corr"]  # a constant unit has no correlation
    assert (a.loc[[1, 2, 3], "universal_excess"] > 0.6).all()
    assert (a.drop(index=[1, 2, 3]).universal_excess.dropna() < 0.5).all()
    b = res.b.set_index("unit")
    assert sorted(b.index[b.label_universal]) == [1, 2, 3]
    # the labels go through label_units too
    table, info = label_units(res.a)
    assert table["label_universal"].tolist() == res.a["label_universal"].tolist()
    assert info["labels"]["label_universal"]["score"] == "universal_excess"
