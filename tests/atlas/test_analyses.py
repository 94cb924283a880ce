"""Analyses recorded inside an atlas: their folder, the manifest entry, errors."""

from __future__ import annotations

import json

import pytest

from neuronatlas.atlas import add_analysis, analysis_dir, get_analysis, list_analyses
from neuronatlas.errors import AtlasError
from neuronatlas.viewer import write_synthetic_atlas


@pytest.fixture
def atlas(tmp_path):
    return write_synthetic_atlas(tmp_path / "atlas", n_layers=1, n_units=4)


def test_entries_are_recorded_replaced_and_listed(atlas):
    folder = analysis_dir(atlas, "probes", "keyword")
    assert folder == atlas / "analyses" / "probes" / "keyword" and folder.is_dir()
    (folder / "curve.parquet").write_bytes(b"x")
    first = add_analysis(atlas, "probes", "keyword", files=["curve.parquet"], k_max=64)
    assert first["path"] == "analyses/probes/keyword" and first["k_max"] == 64
    add_analysis(atlas, "heads", "scores")
    again = add_analysis(atlas, "probes", "keyword", files=["curve.parquet"], k_max=32)
    manifest = json.loads((atlas / "atlas.json").read_text())
    assert list(manifest["analyses"]) == ["probes/keyword", "heads/scores"]
    assert manifest["analyses"]["probes/keyword"]["k_max"] == 32 == again["k_max"]
    assert [a["key"] for a in list_analyses(atlas, "heads")] == ["heads/scores"]
    assert get_analysis(atlas, "heads", "scores")["name"] == "scores"
    assert manifest["format"] == "neuronatlas.atlas" and manifest["complete"] is True


def test_bad_names_missing_files_and_unknown_analyses_are_explained(atlas):
    with pytest.raises(AtlasError, match="names a folder"):
        analysis_dir(atlas, "../escape", "x")
    analysis_dir(atlas, "sae", "l3")
    with pytest.raises(AtlasError, match=r"\['w.safetensors'\] are not in"):
        add_analysis(atlas, "sae", "l3", files=["w.safetensors"])
    assert list_analyses(atlas) == []  # nothing recorded by the failed call
    add_analysis(atlas, "sae", "l3")
    with pytest.raises(AtlasError, match="Recorded analyses: sae/l3"):
        get_analysis(atlas, "sae", "l4")
    with pytest.raises(AtlasError, match="is not an atlas"):
        analysis_dir(atlas / "analyses", "sae", "x")


def test_the_store_of_an_atlas_without_one_is_explained(atlas):
    from neuronatlas.atlas import open_atlas

    opened = open_atlas(atlas)
    assert open_atlas(opened) is opened
    with pytest.raises(AtlasError, match="--keep-activations"):
        opened.store()
