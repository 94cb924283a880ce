"""Minibatch reading: every row exactly once per epoch, deterministic, in bounded memory."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
import torch

from neuronatlas.store import ActivationStore, minibatches

N, CHUNK = 1000, 64


def _store_with_row_ids(path, n=N, chunk_rows=CHUNK, units=4, dtype="float32", append_rows=300):
    """Column 0 holds the row number (exact in float32), the others noise."""
    x = np.random.default_rng(0).standard_normal((n, units)).astype(np.float32)
    x[:, 0] = np.arange(n)
    with ActivationStore.create(path, {"a": units}, chunk_rows=chunk_rows, dtype=dtype) as store:
        for a in range(0, n, append_rows):
            z = min(a + append_rows, n)
            store.append({"a": x[a:z]}, doc=np.arange(a, z), pos=np.zeros(z - a))
    return ActivationStore.open(path), x


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return _store_with_row_ids(tmp_path_factory.mktemp("mb") / "s")


def _ids(batches):
    return torch.cat([b[:, 0] for b in batches]).long().numpy()


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("batch_size", [7, 64, 100, 1000])
def test_every_row_exactly_once_per_epoch(rows, shuffle, batch_size):
    store, x = rows
    batches = list(store.minibatches("a", batch_size, shuffle=shuffle, seed=3, epochs=2))
    sizes = [len(b) for b in batches]
    per_epoch = -(-N // batch_size)
    assert len(batches) == 2 * per_epoch
    assert sizes[: per_epoch - 1] == [batch_size] * (per_epoch - 1)
    ids = _ids(batches)
    for epoch in (ids[:N], ids[N:]):
        np.testing.assert_array_equal(np.sort(epoch), np.arange(N))
    np.testing.assert_array_equal(torch.cat(batches)[:, 1:].numpy(), x[ids][:, 1:])
    if shuffle:
        assert not np.array_equal(ids[:N], ids[N:])  # each epoch draws a new order
        assert abs(np.corrcoef(ids[:N], np.arange(N))[0, 1]) < 0.5
    else:
        np.testing.assert_array_equal(ids[:N], np.arange(N))


def test_drop_last_and_shards(rows):
    store, _ = rows
    batches = list(store.minibatches("a", 96, drop_last=True, seed=1))
    assert {len(b) for b in batches} == {96}
    ids = _ids(batches)
    assert len(ids) == N // 96 * 96 and len(set(ids.tolist())) == len(ids)
    shards = [_ids(list(store.minibatches("a", 50, seed=9, shard=(r, 3)))) for r in range(3)]
    np.testing.assert_array_equal(np.sort(np.concatenate(shards)), np.arange(N))
    # shards own whole chunks
    assert [set(s // CHUNK) & set(t // CHUNK) for s, t in [shards[:2], shards[1:]]] == [set()] * 2


def test_same_seed_same_batches_other_seed_other_order(rows):
    store, _ = rows
    a = _ids(list(minibatches(store, "a", 32, seed=5)))
    b = _ids(list(minibatches(store, "a", 32, seed=5)))
    c = _ids(list(minibatches(store, "a", 32, seed=6)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # a batch mixes rows of several chunks (the shuffle buffer holds 4)
    first = set((a[:32] // CHUNK).tolist())
    assert len(first) >= 3


def test_units_dtype_and_device(rows):
    store, x = rows
    b = next(
        store.minibatches("a", 10, shuffle=False, units=[0, 2], dtype=torch.float64, device="cpu")
    )
    assert (b.dtype, tuple(b.shape)) == (torch.float64, (10, 2))
    np.testing.assert_array_equal(b.numpy(), x[:10][:, [0, 2]])


def test_bfloat16_batches_equal_read(tmp_path):
    store, _ = _store_with_row_ids(tmp_path / "s", n=200, chunk_rows=32, dtype="bfloat16")
    batches = list(store.minibatches("a", 16, seed=0))
    assert {b.dtype for b in batches} == {torch.bfloat16}
    got = torch.cat(batches).float().numpy()
    order = np.argsort(got[:, 0], kind="stable")  # row ids < 256 are exact in bfloat16
    np.testing.assert_array_equal(got[order], store.read("a"))


def _peak_bytes(store, **kw) -> int:
    """Peak traced bytes (numpy buffers included) of one epoch of minibatches.

    zarr's asyncio machinery leaves a few KB of cyclic garbage per chunk read, which Python's
    collector frees in its own time; collecting every few batches measures what is held.
    ``gc.freeze`` keeps those collections cheap (older objects are not scanned again).
    """
    gc.collect()
    gc.freeze()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        n = 0
        for k, b in enumerate(store.minibatches("a", 1024, **kw)):
            n += len(b)
            del b
            if k % 4 == 0:
                gc.collect()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.unfreeze()
    assert n == store.n_rows
    return peak


def test_memory_is_bounded_by_a_few_chunks(tmp_path):
    chunk_rows, units = 4096, 16
    chunk_bytes = chunk_rows * units * 4

    def make(name, n_chunks):
        n = n_chunks * chunk_rows
        return _store_with_row_ids(tmp_path / name, n, chunk_rows, units, append_rows=n)[0]

    small, large = make("small", 12), make("large", 48)
    peak_small = _peak_bytes(small, buffer_chunks=4)
    peak_large = _peak_bytes(large, buffer_chunks=4)
    # the buffer (4 chunks), the chunk read ahead (file bytes + decoded), one being added, a batch
    assert 4 * chunk_bytes <= peak_large <= 9 * chunk_bytes
    # flat in the store's size: 4x the chunks, at most the worst-case overlap of one more read
    assert peak_small - chunk_bytes <= peak_large <= peak_small + 1.5 * chunk_bytes
    ordered = _peak_bytes(large, shuffle=False)
    assert chunk_bytes <= ordered <= 5 * chunk_bytes
