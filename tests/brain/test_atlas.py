"""Brain atlases (recordings as units) and encoding maps saved in them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from brain._brain_util import planted_recording, sentences

from neuronatlas import open_atlas
from neuronatlas.brain import align_stimuli, encode, open_recording, write_brain_atlas
from neuronatlas.errors import AtlasError, AtlasExistsError, DataError

SITE = "encoder.layer.1.output.dense:input"  # the planted site: layer 1's MLP neurons


@pytest.fixture(scope="module")
def brain(model_atlas, tmp_path_factory):
    rec = align_stimuli(planted_recording(model_atlas, SITE), model_atlas)
    return write_brain_atlas(rec, tmp_path_factory.mktemp("brain") / "b", top_k=5), rec


def test_stimuli_are_aligned_by_text(model_atlas, brain):
    _, rec = brain
    assert rec.stimuli["doc"].tolist() == list(range(60))  # sentence i is doc i
    bad = planted_recording(model_atlas, SITE)
    bad.stimuli.loc[3, "text"] = "A sentence the model never read."
    with pytest.raises(DataError, match="1 stimuli match no doc"):
        align_stimuli(bad, model_atlas)


def test_brain_atlas_tables_match_numpy(brain):
    path, rec = brain
    atlas = open_atlas(path)
    assert [s["name"] for s in atlas.manifest["sites"]] == ["V1", "IT"]
    assert {s["kind"] for s in atlas.manifest["sites"]} == {"brain"}
    units = atlas.units
    mean = rec.mean_responses()  # (stimulus, unit)
    np.testing.assert_array_equal(units["count"].to_numpy(), np.full(10, 60))
    np.testing.assert_allclose(units["mean"].to_numpy(), mean.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(units["std"].to_numpy(), mean.std(0), rtol=1e-4)
    np.testing.assert_allclose(units["max"].to_numpy(), mean.max(0), rtol=1e-6)
    ex = atlas.query("select * from exemplars where site = 'IT' and unit = 2 order by rank")
    np.testing.assert_array_equal(ex["doc"].to_numpy(), np.argsort(-mean[:, 6], kind="stable")[:5])
    assert ex["token"].iloc[0] == f"s{ex['doc'].iloc[0]}"
    tokens = atlas.query("select * from tokens order by doc")
    assert tokens["text"].tolist() == sentences(60)
    again = open_recording(path)
    np.testing.assert_array_equal(again.responses, rec.responses)
    np.testing.assert_array_equal(again.trial_stimulus, rec.trial_stimulus)
    assert again.stimuli["doc"].tolist() == rec.stimuli["doc"].tolist()
    with pytest.raises(AtlasExistsError, match="force"):
        write_brain_atlas(rec, path)


def test_encoding_scores_match_a_direct_fit(model_atlas, brain):
    """encode = stimulus features → ridge_cv on the trial means, normalized by CC_max."""
    import torch

    from neuronatlas.brain import noise_ceiling, ridge_cv
    from neuronatlas.compare import stimulus_features

    path, rec = brain
    alphas = np.logspace(-2, 4, 7)
    res = encode(model_atlas, path, "encoder.layer.*", alphas=alphas, name="t",
                 dtype=torch.float64)  # fmt: skip
    assert list(dict.fromkeys(res.scores["model_site"])) == [
        "encoder.layer.0", "encoder.layer.0.output.dense:input",
        "encoder.layer.1", "encoder.layer.1.output.dense:input",
    ]  # fmt: skip
    ceiling = noise_ceiling(rec.repeats())["cc_max"].numpy()
    # 3 repeats at noise 0.5 around a unit-variance signal: CC_max = 1/sqrt(1 + 0.25/3)
    np.testing.assert_allclose(ceiling, 1 / np.sqrt(1 + 0.25 / 3), atol=0.05)
    for site, got in res.scores.groupby("model_site", sort=False):
        x = stimulus_features(model_atlas, site, stimuli=rec.stimuli["doc"].to_numpy())
        ref = ridge_cv(x, rec.mean_responses(), alphas=alphas, cv=5, dtype=torch.float64)
        np.testing.assert_allclose(got["r"], ref.r.numpy(), rtol=1e-9)
        np.testing.assert_allclose(got["r2"], ref.r2.numpy(), rtol=1e-9)
        np.testing.assert_allclose(got["alpha"], ref.best_alpha.numpy())
        np.testing.assert_allclose(got["cc_max"], ceiling, rtol=1e-12)
        np.testing.assert_allclose(got["r_norm"], ref.r.numpy() / ceiling, rtol=1e-9)
    for region in ("V1", "IT"):
        medians = res.summary[res.summary["site"] == region].set_index("model_site")["median_r"]
        assert res.best_site(region) == medians.idxmax() == res.entry["best_site"][region]
    saved = pd.read_parquet(path / "analyses/encoding/t/scores.parquet")
    pd.testing.assert_frame_equal(saved, res.scores)
    with pytest.raises(AtlasError, match="not a brain atlas"):
        encode(model_atlas, model_atlas.path, SITE)
    with pytest.raises(DataError, match="No stored site"):
        encode(model_atlas, path, "decoder.*")
