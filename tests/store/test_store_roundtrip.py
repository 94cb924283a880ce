"""Round trips: what is appended is what is read, for every dtype, layout and selection."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from store._store_testutil import fill_store, stored_reference

from neuronatlas.store import ActivationStore

N, UNITS_A, UNITS_B, CHUNK = 1000, 13, 3, 64
SITES = {"encoder.layer.0.output.dense:input": UNITS_A, "encoder.layer.0": UNITS_B}


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    data = {name: rng.standard_normal((N, u), dtype=np.float32) * 3 for name, u in SITES.items()}
    doc = np.repeat(np.arange(N // 10), 10) + 7
    pos = np.tile(np.arange(10), N // 10)
    token_id = rng.integers(0, 50_000, N)
    return data, doc, pos, token_id


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize(("unit_chunk", "compressor"), [(None, None), (5, "zstd")])
def test_round_trip_matches_appended_numpy(tmp_path, dtype, unit_chunk, compressor):
    data, doc, pos, token_id = _data()
    store = ActivationStore.create(
        tmp_path / "s",
        SITES,
        dtype=dtype,
        chunk_rows=CHUNK,
        unit_chunk=unit_chunk,
        compressor=compressor,
    )
    fill_store(store, data, doc, pos, token_id, np.random.default_rng(1))
    store.close()

    r = ActivationStore.open(tmp_path / "s")
    assert (r.n_rows, r.complete, r.dtype, r.sites) == (N, True, dtype, SITES)
    for name, x in data.items():
        got = r.read(name)
        want = stored_reference(x, dtype)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    idx = r.index()
    assert idx.column_names == ["row", "doc", "pos", "token_id"]
    np.testing.assert_array_equal(idx.column("row").to_numpy(), np.arange(N))
    np.testing.assert_array_equal(idx.column("doc").to_numpy(), doc)
    np.testing.assert_array_equal(idx.column("pos").to_numpy(), pos)
    np.testing.assert_array_equal(idx.column("token_id").to_numpy(), token_id)
    assert r.verify() == len(r.manifest["index"]) + sum(
        s.n_unit_chunks * r.n_chunks for s in r.site_info
    )


def test_bfloat16_raw_bits_and_special_values(tmp_path):
    x = np.array([[0.0, -0.0, 1.0, np.inf, -np.inf, np.nan, 1e-40, 3.14159265]], np.float32)
    with ActivationStore.create(tmp_path / "s", {"a": 8}, dtype="bfloat16") as store:
        store.append({"a": x}, doc=[0], pos=[0])
    r = ActivationStore.open(tmp_path / "s")
    want = torch.from_numpy(x).to(torch.bfloat16)
    np.testing.assert_array_equal(r.read("a", raw=True), want.view(torch.int16).numpy().view("u2"))
    np.testing.assert_array_equal(r.read("a"), want.float().numpy())  # NaN == NaN here
    batch = next(iter(r.minibatches("a", 4, shuffle=False)))
    assert batch.dtype == torch.bfloat16
    assert torch.equal(batch.view(torch.int16), want.view(torch.int16))


def test_float32_keeps_nonfinite_and_exact_bits(tmp_path):
    x = np.array([[np.nan, np.inf, -np.inf, -0.0, 1e-45]], np.float32)
    with ActivationStore.create(tmp_path / "s", {"a": 5}) as store:
        store.append({"a": torch.from_numpy(x)}, doc=[0], pos=[0])
    got = ActivationStore.open(tmp_path / "s").read("a")
    np.testing.assert_array_equal(got.view(np.uint32), x.view(np.uint32))


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    data, doc, pos, token_id = _data(seed=5)
    path = tmp_path_factory.mktemp("filled") / "s"
    store = ActivationStore.create(path, SITES, chunk_rows=CHUNK, unit_chunk=4)
    fill_store(store, data, doc, pos, token_id, np.random.default_rng(2), commit=False)
    store.close()
    return ActivationStore.open(path), data, np.stack([doc, pos, token_id], 1)


_slices = st.builds(
    slice,
    st.one_of(st.none(), st.integers(-1200, 1200)),
    st.one_of(st.none(), st.integers(-1200, 1200)),
    st.one_of(st.none(), st.integers(1, 70)),
)


@settings(max_examples=40, deadline=None)
@given(rows=_slices, units=st.builds(slice, st.integers(0, 14), st.integers(0, 14)))
def test_read_slices_match_numpy(filled, rows, units):
    store, data, _ = filled
    name = "encoder.layer.0.output.dense:input"
    np.testing.assert_array_equal(store.read(name, rows, units), data[name][rows, units])


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(st.integers(-N, N - 1), min_size=0, max_size=40),
    units=st.lists(st.integers(0, UNITS_A - 1), min_size=1, max_size=6),
)
def test_read_index_arrays_match_numpy(filled, rows, units):
    store, data, idx = filled
    name = "encoder.layer.0.output.dense:input"
    r = np.array(rows, dtype=np.int64)
    got = store.read(name, r, np.array(units))
    np.testing.assert_array_equal(got, data[name][r][:, units])
    table = store.index(r)
    np.testing.assert_array_equal(table.column("row").to_numpy(), np.where(r < 0, r + N, r))
    np.testing.assert_array_equal(table.column("token_id").to_numpy(), idx[r, 2])


def test_read_bool_mask_and_iter_chunks(filled):
    store, data, idx = filled
    name = "encoder.layer.0"
    mask = np.zeros(N, bool)
    mask[[3, 64, 999]] = True
    np.testing.assert_array_equal(store.read(name, mask), data[name][mask])
    chunks = list(store.iter_chunks(name, units=slice(1, 3)))
    assert len(chunks) == store.n_chunks == -(-N // CHUNK)
    assert [c[0] for c in chunks] == [store.chunk_slice(i) for i in range(store.n_chunks)]
    assert chunks[-1][1].shape == (N % CHUNK, 2)
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), data[name][:, 1:3])
    np.testing.assert_array_equal(
        store.index(slice(10, 20)).column("doc").to_numpy(), idx[10:20, 0]
    )


def test_plain_tools_read_the_store(filled):
    store, data, idx = filled
    name = "encoder.layer.0.output.dense:input"
    arr = zarr.open_array(store.path / store.site_info[0].array, mode="r")
    assert arr.shape == (N, UNITS_A)
    assert arr.metadata.dimension_names == ("row", "unit")
    np.testing.assert_array_equal(arr[:], data[name])
    glob = str(store.path / "index" / "*.parquet")
    rows = duckdb.sql(f"select count(*), sum(doc), max(row) from '{glob}'").fetchall()[0]
    assert rows == (N, int(idx[:, 0].sum()), N - 1)
    first = pq.read_table(store.path / store.manifest["index"][0]["file"])
    assert first.schema.field("pos").type == "int32"


def test_three_d_rows_with_mask_and_no_token_ids(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    mask = rng.random((3, 5)) > 0.4
    doc = np.repeat(np.arange(3)[:, None], 5, 1)
    pos = np.tile(np.arange(5), (3, 1))
    with ActivationStore.create(tmp_path / "s", {"a": 4}, chunk_rows=2) as store:
        kept = store.append({"a": torch.from_numpy(x)}, doc, pos, mask=torch.from_numpy(mask))
        assert kept == mask.sum()
    r = ActivationStore.open(tmp_path / "s")
    np.testing.assert_array_equal(r.read("a"), x[mask])
    np.testing.assert_array_equal(r.index().column("doc").to_numpy(), doc[mask])
    assert r.index().column("token_id").to_pylist() == [-1] * int(mask.sum())


def test_all_zero_chunks_are_written_and_checked(tmp_path):
    with ActivationStore.create(tmp_path / "s", {"a": 6}, chunk_rows=8) as store:
        store.append({"a": torch.zeros(20, 6)}, doc=np.zeros(20), pos=np.arange(20))
    r = ActivationStore.open(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s" / "a" / "c").iterdir()) == ["0", "1", "2"]
    assert r.verify() == 3 + len(r.manifest["index"])
    np.testing.assert_array_equal(r.read("a"), np.zeros((20, 6), np.float32))


def test_per_site_dtypes_and_a_writer_reads_committed_rows(tmp_path):
    store = ActivationStore.create(
        tmp_path / "s", {"a": 3, "b": 2}, dtype={"a": "float16", "b": "float32"}, chunk_rows=4
    )
    x = np.arange(30, dtype=np.float32).reshape(10, 3) / 7
    y = np.arange(20, dtype=np.float32).reshape(10, 2) / 3
    store.append({"a": x, "b": y}, doc=range(10), pos=[0] * 10)
    assert store.commit({"n": 10}) == 8  # two whole chunks; two rows wait in the buffer
    assert store.dtype == {"a": "float16", "b": "float32"}
    np.testing.assert_array_equal(store.read("a"), x[:8].astype(np.float16))
    np.testing.assert_array_equal(store.read("b", rows=slice(-3, None)), y[5:8])
    store.close()
    assert store.n_rows == 10
    np.testing.assert_array_equal(store.read("b"), y)


def test_empty_store_closes_to_zero_rows(tmp_path):
    with ActivationStore.create(tmp_path / "s", {"a": 3}):
        pass
    r = ActivationStore.open(tmp_path / "s")
    assert (r.n_rows, r.complete, r.read("a").shape, r.index().num_rows) == (0, True, (0, 3), 0)
    assert list(r.minibatches("a", 4)) == []
