"""The label-evidence panel on a real (tiny) atlas built with the taxonomy."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from helpers import tiny_sequential

from neuronatlas import build_atlas
from neuronatlas.viewer import create_app


@pytest.fixture(scope="module")
def atlas_dir(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("labels") / "a"
    build_atlas(tiny_sequential(), [torch.randn(64, 8) for _ in range(2)], out=out, sites="act")
    return out


def test_unit_page_shows_each_label_with_its_score_and_rule(atlas_dir):
    from neuronatlas.atlas import open_atlas

    atlas = open_atlas(atlas_dir)
    specs = atlas.manifest["taxonomy"]["labels"]
    assert "label_dead" in specs
    dead = atlas.units[atlas.units["label_dead"]]
    unit = int(dead["unit"].iloc[0]) if len(dead) else 0
    page = TestClient(create_app(atlas_dir), base_url="http://127.0.0.1").get(f"/unit/act/{unit}")
    assert page.status_code == 200
    html = page.text
    assert "Label evidence" in html
    for name, spec in specs.items():
        assert f"{spec['score']} = " in html, name
    if len(dead):
        assert '<tr class="on">' in html
