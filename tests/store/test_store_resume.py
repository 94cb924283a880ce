"""Commit granularity, cursors, resuming an abandoned writer, and cleanup of what it left."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import zarr
from zarr.core.buffer import default_buffer_prototype

from neuronatlas.errors import StoreError, StoreMismatchError
from neuronatlas.store import ActivationStore

SITES = {"mlp.0": 5, "resid.0": 3}
CHUNK = 16


def batch(i: int):
    n = 5 + (i * 7) % 11
    rng = np.random.default_rng(i)
    rows = {
        k: torch.from_numpy(rng.standard_normal((n, u), dtype=np.float32)) for k, u in SITES.items()
    }
    return rows, np.full(n, i), np.arange(n), np.arange(n) + 100 * i


def produce(path, stop: int, n_batches: int = 30, close: bool = True):
    """The producer pattern: open (or create), restart at the cursor, append, commit each batch."""
    store = ActivationStore.open(path, mode="a", sites=SITES, chunk_rows=CHUNK)
    start = store.cursor["batches_done"] if store.cursor else 0
    for i in range(start, min(stop, n_batches)):
        store.append(*batch(i))
        store.commit({"batches_done": i + 1})
    if close and stop >= n_batches:
        store.close()
    return store


def chunk_files(path):
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and "/c/" in p.as_posix()
    }


def test_commit_keeps_whole_chunks_and_the_last_cursor_inside_them(tmp_path):
    store = ActivationStore.create(tmp_path / "s", {"a": 2}, chunk_rows=64)
    rows = torch.arange(400.0).reshape(200, 2)
    store.append({"a": rows[:100]}, doc=np.zeros(100), pos=np.arange(100))
    assert store.commit({"b": 1}) == 64  # one whole chunk; 36 rows stay buffered
    assert (store.n_rows, store.cursor, store.cursor_rows) == (64, None, 0)
    store.append({"a": rows[100:150]}, doc=np.ones(50), pos=np.arange(50))
    assert store.commit({"b": 2}) == 128
    # batch 1 ended at row 100 <= 128: its cursor is the latest one the commit covers
    assert (store.cursor, store.cursor_rows) == ({"b": 1}, 100)
    reader = ActivationStore.open(tmp_path / "s")
    assert (reader.n_rows, reader.complete) == (128, False)
    np.testing.assert_array_equal(reader.read("a"), rows[:128].numpy())
    assert store.commit({"b": 2}) == 128  # nothing new: no new manifest
    assert store.manifest["commits"] == 2
    store.close()
    assert (store.n_rows, store.cursor, store.cursor_rows) == (150, {"b": 2}, 150)


@pytest.mark.parametrize("stop", [1, 3, 7, 12, 29])
def test_resume_after_an_abandoned_writer_is_byte_identical(tmp_path, stop):
    ref = produce(tmp_path / "ref", stop=30)
    abandoned = produce(tmp_path / "s", stop=stop, close=False)
    committed = abandoned.n_rows
    del abandoned  # the process "dies": buffered rows and chunks past the commit are lost
    resumed = ActivationStore.open(tmp_path / "s", mode="a", sites=SITES)
    assert resumed.n_rows == committed and resumed.cursor_rows <= committed
    produce(tmp_path / "s", stop=30)
    assert chunk_files(tmp_path / "s") == chunk_files(tmp_path / "ref")
    a, b = ActivationStore.open(tmp_path / "s"), ActivationStore.open(ref.path)
    assert a.index().equals(b.index())
    assert (a.n_rows, a.cursor, a.complete) == (b.n_rows, b.cursor, True)


def test_resent_rows_are_checked_against_the_commit(tmp_path):
    produce(tmp_path / "s", stop=5, close=False)
    store = ActivationStore.open(tmp_path / "s", mode="a")
    assert store.cursor_rows < store.n_rows  # some committed rows come after the cursor
    rows, doc, pos, tok = batch(store.cursor["batches_done"])
    with pytest.raises(
        StoreMismatchError, match=r"re-sent row \d+ as \(doc=\d+, pos=0, token_id=\d+\)"
    ):
        store.append(rows, doc + 1, pos, tok)  # a producer resuming from the wrong place
    store = ActivationStore.open(tmp_path / "s", mode="a")
    with pytest.raises(StoreError, match="re-sent only up to row"):
        store.close()


def test_exception_in_with_block_leaves_the_store_resumable(tmp_path):
    store = ActivationStore.create(tmp_path / "s", SITES, chunk_rows=CHUNK)
    with pytest.raises(RuntimeError, match="model crashed"), store:
        for i in range(6):
            store.append(*batch(i))
            store.commit({"batches_done": i + 1})
        raise RuntimeError("model crashed")
    reopened = ActivationStore.open(tmp_path / "s")
    assert not reopened.complete and reopened.n_rows > 0 and reopened.n_rows % CHUNK == 0


def test_open_for_append_cleans_what_an_interrupted_writer_left(tmp_path):
    path = tmp_path / "s"
    store = produce(path, stop=4, close=False)
    n_chunks = store.n_chunks
    # a writer that ran on without committing: chunk files, an index part, a manifest temp file
    for i in range(4, 9):
        store.append(*batch(i))
    store._writer.drain()
    store._writer._write_index_part()
    (path / "store.json.tmp-999").write_text("{")
    stray = sorted((path / "mlp.0" / "c").iterdir(), key=lambda p: int(p.name))
    assert len(stray) > n_chunks
    parts_on_disk = len(list((path / "index").iterdir()))
    assert parts_on_disk > len(store.manifest["index"])
    del store
    ActivationStore.open(path, mode="a")
    assert len(list((path / "mlp.0" / "c").iterdir())) == n_chunks
    assert len(list((path / "index").iterdir())) == len(
        json.loads((path / "store.json").read_text())["index"]
    )
    assert not (path / "store.json.tmp-999").exists()


def test_interrupted_create_is_redone_and_open_a_creates(tmp_path):
    store = ActivationStore.create(tmp_path / "s", SITES)
    (tmp_path / "s" / "store.json").unlink()  # killed before the first manifest was written
    del store
    with pytest.raises(StoreError, match=r"has no store\.json"):
        ActivationStore.open(tmp_path / "s")
    store = ActivationStore.open(tmp_path / "s", mode="a", sites=SITES, dtype="float16")
    assert (store.n_rows, store.dtype, store.sites) == (0, "float16", SITES)
    fresh = ActivationStore.open(tmp_path / "new", mode="a", sites={"x": 1})
    assert fresh.sites == {"x": 1}
    with pytest.raises(StoreError, match="does not exist"):
        ActivationStore.open(tmp_path / "missing", mode="a")  # no sites: nothing to create


def test_complete_store_is_final_and_its_shape_is_finished_on_reopen(tmp_path):
    path = tmp_path / "s"
    produce(path, stop=30)
    store = ActivationStore.open(path, mode="a", sites=SITES)
    assert store.complete
    with pytest.raises(StoreError, match="it is complete"):
        store.append(*batch(0))
    # killed after the final commit but before the arrays' zarr shape was rewritten
    arr = store._arrays["mlp.0"]
    meta = arr.metadata.update_shape((1 << 40, 5))
    (path / "mlp.0" / "zarr.json").write_bytes(
        meta.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes()
    )
    reader = ActivationStore.open(path)
    assert reader.read("mlp.0").shape == (reader.n_rows, 5)  # the manifest decides
    ActivationStore.open(path, mode="a")
    assert zarr.open_array(path / "mlp.0", mode="r").shape == (reader.n_rows, 5)


@pytest.mark.skipif(sys.platform == "win32", reason="the writer lock uses fcntl")
def test_a_second_writer_process_is_refused(tmp_path):
    produce(tmp_path / "s", stop=3, close=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "s" / "store.lock")],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(StoreError, match="Another process is writing"):
            ActivationStore.open(tmp_path / "s", mode="a")
        assert ActivationStore.open(tmp_path / "s").n_rows > 0  # readers are not locked out
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    produce(tmp_path / "s", stop=30)  # the lock died with its process
    assert ActivationStore.open(tmp_path / "s").complete


HOLD_LOCK = """
import fcntl, sys, time
f = open(sys.argv[1], "a+b")
try:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    print("busy", flush=True)
    sys.exit(1)
print("locked", flush=True)
time.sleep(60)
"""
