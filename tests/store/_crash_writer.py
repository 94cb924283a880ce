"""A deterministic producer that writes an activation store and resumes from its cursor.

Used by test_store_crash.py, which runs it in a subprocess and SIGKILLs it at random moments:

    echo go | python tests/store/_crash_writer.py PATH

Batch ``i`` always holds the same rows (seeded by ``i``), so a resumed run must reproduce an
uninterrupted one byte for byte. It writes with ``durable=False``: fsync only matters for power
loss, and a SIGKILLed process loses nothing the kernel already has, fsynced or not.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from neuronatlas.store import ActivationStore

SITES = {"blocks.0.mlp.down_proj:input": 48, "blocks.0": 16}
N_BATCHES = 400
CHUNK_ROWS = 64
COMMIT_EVERY = 3
DTYPE = "float16"
KEEP_FRACTION = 0.9


def batch(i: int) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray, np.ndarray]:
    """Rows of batch ``i``: ``({site: (n, unit)}, doc, pos, token_id)``."""
    n = 20 + (i * 7919) % 53
    rng = np.random.default_rng(i)
    rows = {
        name: torch.from_numpy(rng.standard_normal((n, units), dtype=np.float32))
        for name, units in SITES.items()
    }
    pos = np.arange(n)
    return rows, np.full(n, i), pos, (31 * i + pos) % 1000


def run(
    path: str, n_batches: int = N_BATCHES, announce: bool = False, durable: bool = False
) -> ActivationStore:
    """Write (or resume writing) the store at ``path`` to completion."""
    store = ActivationStore.open(
        path,
        mode="a",
        sites=SITES,
        dtype=DTYPE,
        chunk_rows=CHUNK_ROWS,
        keep_fraction=KEEP_FRACTION,
        durable=durable,
    )
    if announce:
        print("ready", flush=True)
    if store.complete:
        return store
    start = store.cursor["batches_done"] if store.cursor else 0
    for i in range(start, n_batches):
        rows, doc, pos, token_id = batch(i)
        store.append(rows, doc, pos, token_id)
        if (i + 1) % COMMIT_EVERY == 0:
            store.commit({"batches_done": i + 1})
            if announce:
                print(i + 1, flush=True)  # lets the test kill at a chosen stage of the run
    store.close({"batches_done": n_batches})
    return store


if __name__ == "__main__":
    import pyarrow

    pyarrow.array(np.arange(3))  # pyarrow imports pandas on first use: do it before "go"
    sys.stdin.readline()  # started ahead of time; write when told
    run(sys.argv[1], announce=True)
