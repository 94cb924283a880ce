"""Bad input, other format versions, mismatched settings and corrupted files: clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuronatlas.errors import (
    FormatVersionError,
    NeuronAtlasError,
    StoreCorruptedError,
    StoreError,
    StoreMismatchError,
)
from neuronatlas.store import ActivationStore

SITES = {"transformer.h.0.mlp.c_proj:input": 6, "transformer.h.0": 4}


def _write(path, n=50, chunk_rows=8, **kw):
    rng = np.random.default_rng(0)
    data = {k: rng.standard_normal((n, u), dtype=np.float32) for k, u in SITES.items()}
    with ActivationStore.create(path, SITES, chunk_rows=chunk_rows, **kw) as store:
        store.append(data, doc=np.arange(n), pos=np.zeros(n))
    return data


def _edit_manifest(path, **changes):
    m = json.loads((path / "store.json").read_text())
    m.update(changes)
    (path / "store.json").write_text(json.dumps(m))


def test_other_format_version_and_not_a_store(tmp_path):
    _write(tmp_path / "s")
    _edit_manifest(tmp_path / "s", version=2)
    with pytest.raises(FormatVersionError, match=r"version 2; this neuronatlas reads version 1"):
        ActivationStore.open(tmp_path / "s")
    with pytest.raises(FormatVersionError):
        ActivationStore.open(tmp_path / "s", mode="a", sites=SITES)
    _edit_manifest(tmp_path / "s", version=1, format="neuronatlas.atlas")
    with pytest.raises(StoreError, match=r"got format 'neuronatlas\.atlas'"):
        ActivationStore.open(tmp_path / "s")
    with pytest.raises(StoreError, match="does not exist"):
        ActivationStore.open(tmp_path / "nowhere")
    (tmp_path / "s" / "store.json").write_text("{not json")
    with pytest.raises(StoreCorruptedError, match="cannot be read as JSON"):
        ActivationStore.open(tmp_path / "s")


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ({"sites": {"transformer.h.0.mlp.c_proj:input": 6}}, r"not given: \['transformer.h.0'\]"),
        ({"sites": {**SITES, "transformer.h.0": 5}}, r"n_units store vs given: .*\(4, 5\)"),
        ({"sites": {**SITES, "extra": 3}}, r"not in store: \['extra'\]"),
        ({"dtype": "bfloat16"}, "dtype: store has"),
        ({"chunk_rows": 16}, "chunk_rows: store has 8, given 16"),
        ({"unit_chunk": 2}, "unit_chunk: store has"),
        ({"keep_fraction": 0.5}, "keep_fraction: store has 1.0, given 0.5"),
        ({"compressor": "zstd"}, "compressor: store has None, given 'zstd'"),
    ],
)
def test_append_with_other_settings_is_a_mismatch(tmp_path, given, match):
    path = tmp_path / "s"
    store = ActivationStore.create(path, SITES, chunk_rows=8)
    store.append({k: torch.ones(3, u) for k, u in SITES.items()}, doc=[0] * 3, pos=[0, 1, 2])
    store.commit({"b": 1})
    with pytest.raises(StoreMismatchError, match=match):
        ActivationStore.open(path, mode="a", **given)
    ok = ActivationStore.open(path, mode="a", sites=dict(reversed(SITES.items())), dtype="float32")
    assert ok.sites == SITES  # order given does not matter


def test_create_refuses_to_clobber(tmp_path):
    _write(tmp_path / "s")
    with pytest.raises(StoreError, match="already exists"):
        ActivationStore.create(tmp_path / "s", SITES)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    for kw in ({}, {"overwrite": True}):
        with pytest.raises(StoreError, match="not empty and is not an activation store"):
            ActivationStore.create(other, SITES, **kw)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(StoreError, match="not empty and is not an activation store"):
        ActivationStore.open(other, mode="a", sites=SITES)
    store = ActivationStore.create(tmp_path / "s", {"x": 2}, overwrite=True)
    assert (store.n_rows, store.sites) == (0, {"x": 2})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sites": {}}, "non-empty mapping"),
        ({"sites": {"a": 0}}, "n_units of site 'a' must be a positive int"),
        ({"dtype": "float64"}, r"one of \['bfloat16', 'float16', 'float32'\]"),
        ({"dtype": "bfloat61"}, "did you mean 'bfloat16'"),
        ({"dtype": {"a": "float16"}}, r"missing \['b'\]"),
        ({"chunk_rows": 0}, "chunk_rows must be a positive int"),
        ({"compressor": "zstdd"}, "did you mean 'zstd'"),
        ({"keep_fraction": 0.0}, r"keep_fraction must be a number in \(0, 1\]"),
    ],
)
def test_bad_settings(tmp_path, kwargs, match):
    args = {"sites": {"a": 2, "b": 3}, **kwargs}
    with pytest.raises(StoreError, match=match):
        ActivationStore.create(tmp_path / "s", **args)


def test_bad_appends_and_reads(tmp_path):
    store = ActivationStore.create(tmp_path / "s", SITES, chunk_rows=8)
    good = {k: torch.ones(3, u) for k, u in SITES.items()}
    with pytest.raises(StoreError, match=r"missing \['transformer.h.0'\]"):
        store.append({"transformer.h.0.mlp.c_proj:input": torch.ones(3, 6)}, [0] * 3, [0] * 3)
    with pytest.raises(StoreError, match=r"did you mean 'transformer\.h\.0'"):
        store.append({**good, "transformer.h.O": torch.ones(3, 4)}, [0] * 3, [0] * 3)
    with pytest.raises(StoreError, match=r"unit = 4; got shape \(3, 5\)"):
        store.append({**good, "transformer.h.0": torch.ones(3, 5)}, [0] * 3, [0] * 3)
    with pytest.raises(StoreError, match=r"has 3 rows .* doc/pos have 2 entries"):
        store.append(good, [0] * 2, [0] * 2)
    with pytest.raises(StoreError, match="equal length"):
        store.append(good, [0] * 3, [0] * 2)
    with pytest.raises(StoreError, match="fit in int32"):
        store.append(good, [0] * 3, [0, 1, 2**31])
    with pytest.raises(StoreError, match="JSON-serializable"):
        store.commit({"model": object()})
    store.append(good, [0] * 3, [0, 1, 2])
    store.close()
    with pytest.raises(StoreError, match="it is complete"):
        store.append(good, [0] * 3, [0, 1, 2])
    reader = ActivationStore.open(tmp_path / "s")
    with pytest.raises(StoreError, match="it is complete"):
        reader.commit({})
    open_store = ActivationStore.create(tmp_path / "t", {"a": 1})
    with pytest.raises(StoreError, match="opened for reading; open it with mode='a'"):
        ActivationStore.open(open_store.path).append({"a": [[1.0]]}, [0], [0])
    with pytest.raises(StoreError, match=r"no site 'transformer\.h\.1'.*did you mean"):
        reader.read("transformer.h.1")
    with pytest.raises(StoreError, match=r"indices must be in \[-3, 3\)"):
        reader.read("transformer.h.0", rows=[3])
    with pytest.raises(StoreError, match="positive step"):
        reader.read("transformer.h.0", rows=slice(None, None, -1))
    with pytest.raises(StoreError, match="batch_size must be a positive int"):
        next(reader.minibatches("transformer.h.0", 0))
    with pytest.raises(StoreError, match="shard must be"):
        next(reader.minibatches("transformer.h.0", 2, shard=(2, 2)))
    assert issubclass(StoreError, NeuronAtlasError)


def _chunk_file(path, array, i, j=0):
    return path / array / "c" / str(i) / str(j)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_corrupted_chunk_names_site_and_chunk(tmp_path, damage):
    path = tmp_path / "s"
    data = _write(path, n=50, chunk_rows=8)
    f = _chunk_file(path, "transformer.h.0.mlp.c_proj_input", 2)
    raw = bytearray(f.read_bytes())
    if damage == "flip":
        raw[17] ^= 0x40
        f.write_bytes(bytes(raw))
    elif damage == "truncate":
        f.write_bytes(bytes(raw[:-5]))
    else:
        f.unlink()
    store = ActivationStore.open(path)
    site = "transformer.h.0.mlp.c_proj:input"
    with pytest.raises(
        StoreCorruptedError,
        match=r"chunk 'transformer.h.0.mlp.c_proj_input/c/2/0' of site "
        r"'transformer.h.0.mlp.c_proj:input' \(rows 16..23",
    ):
        store.read(site, rows=slice(20, 21))
    with pytest.raises(StoreCorruptedError):
        list(store.minibatches(site, 4))
    with pytest.raises(StoreCorruptedError, match="c/2/0"):
        store.verify()
    # the rest of the store still reads, and the other site is untouched
    np.testing.assert_array_equal(store.read(site, rows=slice(0, 16)), data[site][:16])
    np.testing.assert_array_equal(store.read("transformer.h.0"), data["transformer.h.0"])
    if damage == "flip":  # opening without verification reads the damaged bytes as they are
        unchecked = ActivationStore.open(path, verify=False).read(site, rows=slice(16, 24))
        assert not np.array_equal(unchecked, data[site][16:24])


def test_corrupted_index_part(tmp_path):
    path = tmp_path / "s"
    _write(path)
    store = ActivationStore.open(path)
    part = store.manifest["index"][0]
    f = path / part["file"]
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(StoreCorruptedError, match=r"index part .*rows 0\.\.49"):
        store.index(slice(0, 3))
    with pytest.raises(StoreCorruptedError, match="index part"):
        store.verify()
