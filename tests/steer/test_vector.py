"""Steering vectors round-trip through safetensors + JSON; bad files are clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from neuronatlas.steer import SteeringError, SteeringVector, data_hash, load_vectors, save_vectors


def test_round_trip_is_exact(tmp_path):
    a = SteeringVector(
        "transformer.h.1", "caa", {"vector": torch.randn(32)}, data_hash(["x"]), {"n_pairs": 3}
    )
    b = SteeringVector(
        "transformer.h.0.mlp.c_proj:input",
        "transport",
        {k: torch.randn(128) for k in ("scale", "shift", "lo", "hi")},
        "abc",
        {"reduce": "all"},
    )
    st, js = save_vectors(tmp_path / "vecs", [a, b])
    assert st.name == "vecs.safetensors" and js.name == "vecs.json"
    meta = json.loads(js.read_text())
    assert meta["format"] == "neuronatlas.steering-vectors" and meta["vectors"][0]["site"] == a.site
    back = load_vectors(tmp_path / "vecs.json")
    for x, y in zip([a, b], back, strict=True):
        assert (x.site, x.method, x.source_hash, x.meta) == (
            y.site,
            y.method,
            y.source_hash,
            y.meta,
        )
        assert x.tensors.keys() == y.tensors.keys()
        for k in x.tensors:
            assert torch.equal(x.tensors[k], y.tensors[k])
    assert SteeringVector.load(tmp_path / "vecs", site=b.site).method == "transport"
    a.save(tmp_path / "one.safetensors")
    assert torch.equal(SteeringVector.load(tmp_path / "one").vector, a.vector)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(SteeringError, match="neither exists"):
        load_vectors(tmp_path / "nope")
    v = SteeringVector("h", "caa", {"vector": torch.ones(3)})
    v.save(tmp_path / "v")
    (tmp_path / "v.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(SteeringError, match="format"):
        load_vectors(tmp_path / "v")
    save_vectors(tmp_path / "two", [v, v])
    with pytest.raises(SteeringError, match="holds 2 vectors"):
        SteeringVector.load(tmp_path / "two")
    with pytest.raises(SteeringError, match="no vector for site"):
        SteeringVector.load(tmp_path / "two", site="x")
    with pytest.raises(SteeringError, match="Unknown steering method"):
        SteeringVector("h", "nope", {"vector": torch.ones(3)}).edit(1.0)


def test_data_hash_depends_on_content_and_order():
    x = [torch.tensor([1, 2]), torch.tensor([3])]
    assert data_hash(x) == data_hash([[1, 2], [3]])
    assert data_hash(x) != data_hash(x[::-1])
    assert data_hash(["ab"]) != data_hash([[97, 98]])
