"""A writer SIGKILLed at random moments loses nothing committed and resumes byte-identically."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import neuronatlas
from neuronatlas.store import ActivationStore

WRITER = Path(__file__).with_name("_crash_writer.py")


def _load_writer():
    spec = importlib.util.spec_from_file_location("neuronatlas_store_crash_writer", WRITER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(root: Path) -> dict[str, bytes]:
    """Every zarr file (metadata and chunks) of a store, by relative path."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith("index/") and rel != "store.json":
            out[rel] = p.read_bytes()
    return out


def _next_commit(proc: subprocess.Popen) -> int:
    """The batches_done of the writer's next commit (it prints one line per commit)."""
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"writer stopped: {line!r} {proc.stderr.read().decode()}"
    return int(line)


def _check_killed_store(path, w, ref_values, ref_index, rows_before_batch) -> int | None:
    """A killed writer's store opens and holds exactly a prefix of whole committed chunks."""
    store = ActivationStore.open(path)
    if store.complete:
        return None
    n = store.n_rows
    assert n % w.CHUNK_ROWS == 0  # only whole chunks are ever committed
    assert store.verify() == n // w.CHUNK_ROWS * len(w.SITES) + len(store.manifest["index"])
    for site, values in ref_values.items():
        np.testing.assert_array_equal(store.read(site), values[:n])
    assert store.index().to_pandas().equals(ref_index.iloc[:n].reset_index(drop=True))
    # the cursor is a batch boundary at or before the committed rows, and says which one
    done = store.cursor["batches_done"] if store.cursor else 0
    assert store.cursor_rows == rows_before_batch[done] <= n
    return n


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_at_random_moments_then_resume_is_byte_identical(tmp_path):
    w = _load_writer()
    path = tmp_path / "crash"
    root = Path(neuronatlas.__file__).resolve().parent.parent
    pythonpath = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    # the writers start now and import while the reference runs; each waits for "go" on stdin
    procs = [
        subprocess.Popen(
            [sys.executable, str(WRITER), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": pythonpath},
        )
        for _ in range(4)
    ]
    killed, committed = 0, []
    try:
        ref = w.run(str(tmp_path / "ref"))  # the uninterrupted run
        ref_index = ref.index().to_pandas()
        ref_values = {site: ref.read(site) for site in w.SITES}
        rows_before_batch = np.searchsorted(ref_index["doc"].to_numpy(), np.arange(w.N_BATCHES + 1))
        rnd = random.Random(20240521)
        for proc in procs:
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            ready = proc.stdout.readline()
            assert ready.strip() == b"ready", proc.stderr.read().decode()
            # kill a random number of batches into this run, then a random instant later
            # (mid-append, mid-chunk-write, mid-commit ...): independent of the machine's speed
            target = _next_commit(proc) + rnd.randrange(0, 60)
            while _next_commit(proc) < target:
                pass
            time.sleep(rnd.uniform(0.0, 0.03))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            killed += proc.returncode == -signal.SIGKILL
            n = _check_killed_store(path, w, ref_values, ref_index, rows_before_batch)
            if n is None:
                break
            committed.append(n)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                f.close()
    assert killed == len(procs)  # every kill hit a running writer
    assert committed == sorted(committed) and committed[-1] > 0

    final = w.run(str(path))  # resume from the cursor to the end
    assert (final.n_rows, final.complete, final.cursor) == (ref.n_rows, True, ref.cursor)
    assert _files(path) == _files(tmp_path / "ref")  # byte-identical chunk files and metadata
    reopened = ActivationStore.open(path)
    assert reopened.index().to_pandas().equals(ref_index)
    m_ref = json.loads((tmp_path / "ref" / "store.json").read_text())
    m_new = json.loads((path / "store.json").read_text())
    for key in ("commits", "index"):  # the commit history differs; the content does not
        m_ref.pop(key), m_new.pop(key)
    assert m_new == m_ref
    assert reopened.verify() > 0
