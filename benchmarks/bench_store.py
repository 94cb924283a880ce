"""Activation store: write/read throughput against raw file I/O, and peak memory at 1x and 10x.

Writes ``--gb`` of float32 rows (1536 units, an MLP site of MiniLM/BERT-base width) three ways
in one run and reports each as a ratio to the floor, a raw sequential write of the same bytes
to one file followed by fsync (what ``dd conv=fsync`` does):

- a bare zarr v3 array with the same chunks, fsynced (what a user would otherwise hand-roll);
- ``ActivationStore`` with ``durable=True`` (checksums, row index, atomic commits, fsync);
- ``ActivationStore`` with ``durable=False`` (same files, no fsync: survives a killed process,
  not a power loss).

Then reads the store back (sequential ``iter_chunks`` and a shuffled ``minibatches`` epoch,
checksums verified) against a raw read of the file, and measures the peak RSS of a writer and
of a minibatch reader in fresh subprocesses at ``--rss-gb`` and 10x that; memory must not grow
with the size of the store.

    .venv/bin/python benchmarks/bench_store.py                    # 1 GB, RSS at 0.25 / 2.5 GB
    .venv/bin/python benchmarks/bench_store.py --gb 4 --rss-gb 0.4 --dir /mnt/fast

Reads come from the page cache (dropping it needs root); writes end in fsync, so they reach
the disk. Times are wall clock on whatever else the machine does: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

UNITS = 1536
BATCH_ROWS = 1024  # rows per append (a batch of 8 sequences x 128 tokens)
CHUNK_ROWS = 4096  # 24 MiB chunks
COMMIT_EVERY = 16  # appends per commit (64 MiB)


def _batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.gelu(torch.randn(BATCH_ROWS, UNITS, generator=g))


def _n_batches(gb: float) -> int:
    return max(1, round(gb * 1e9 / (BATCH_ROWS * UNITS * 4)))


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)


def _sync() -> None:
    """Start each timed write with no dirty pages of the previous one still being flushed."""
    if hasattr(os, "sync"):
        os.sync()


def raw_write(path: Path, x: np.ndarray, n: int) -> float:
    t = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(n):
            f.write(x)
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t


def raw_read(path: Path) -> float:
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(CHUNK_ROWS * UNITS * 4)
        while f.readinto(buf):
            pass
    return time.perf_counter() - t


def zarr_write(path: Path, x: np.ndarray, n: int) -> float:
    import zarr

    t = time.perf_counter()
    arr = zarr.create_array(
        store=str(path),
        shape=(n * BATCH_ROWS, UNITS),
        chunks=(CHUNK_ROWS, UNITS),
        dtype="float32",
        compressors=None,
    )
    buf = np.empty((CHUNK_ROWS, UNITS), np.float32)
    fill, row = 0, 0
    for _ in range(n):  # the same buffering into whole chunks that the store does
        buf[fill : fill + BATCH_ROWS] = x
        fill += BATCH_ROWS
        if fill == CHUNK_ROWS:
            arr[row : row + CHUNK_ROWS] = buf
            row, fill = row + CHUNK_ROWS, 0
    if fill:
        arr[row : row + fill] = buf[:fill]
    _fsync_tree(path)
    return time.perf_counter() - t


def store_write(path: Path, x: torch.Tensor, n: int, durable: bool) -> float:
    from neuronatlas.store import ActivationStore

    t = time.perf_counter()
    store = ActivationStore.create(
        path, {"mlp": UNITS}, chunk_rows=CHUNK_ROWS, durable=durable, overwrite=True
    )
    pos = np.arange(BATCH_ROWS) % 128
    for i in range(n):
        doc = (i * BATCH_ROWS + np.arange(BATCH_ROWS)) // 128
        store.append({"mlp": x}, doc, pos, token_id=pos)
        if (i + 1) % COMMIT_EVERY == 0:
            store.commit({"batches_done": i + 1})
    store.close({"batches_done": n})
    return time.perf_counter() - t


def store_read(path: Path, verify: bool = True) -> tuple[float, float]:
    from neuronatlas.store import ActivationStore

    store = ActivationStore.open(path, verify=verify)
    t = time.perf_counter()
    for _ in store.iter_chunks("mlp"):
        pass
    seq = time.perf_counter() - t
    t = time.perf_counter()
    for _ in store.minibatches("mlp", 4096, seed=0):
        pass
    return seq, time.perf_counter() - t


# -- peak memory in fresh interpreters ---------------------------------------------------------


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: VmHWM, via /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args: argparse.Namespace) -> None:
    """Run one workload; print ``{"rss_start_mb", "peak_rss_mb", "peak_reset"}`` last.

    The peak is reset after the imports and the input batch (where the OS allows it), so it
    measures the workload itself on top of the interpreter, torch, zarr and pyarrow.
    """
    import psutil

    from neuronatlas.store import ActivationStore

    x = _batch()
    path = Path(args.path)
    if args.child == "read":
        warm = ActivationStore.open(path)
        next(iter(warm.iter_chunks("mlp")))  # first-use imports happen before the reset
    else:
        store_write(path.with_name(path.name + "-warmup"), x, 1, durable=False)
    reset = _reset_peak_rss()
    start = psutil.Process().memory_info().rss / 2**20
    if args.child == "write":
        store_write(path, x, args.batches, durable=False)
    else:
        for _ in ActivationStore.open(path).minibatches("mlp", 4096, seed=0):
            pass
    print(json.dumps({"rss_start_mb": start, "peak_rss_mb": _peak_rss_mb(), "peak_reset": reset}))


def run_child(kind: str, path: Path, batches: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--path", str(path)]
    cmd += ["--batches", str(batches)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gb", type=float, default=1.0, help="bytes written per method (GB)")
    p.add_argument("--rss-gb", type=float, default=0.25, help="1x store size for peak RSS (GB)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs per method")
    p.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    p.add_argument("--child", choices=["write", "read"], help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--batches", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    work = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
    try:
        n = _n_batches(args.gb)
        x = _batch()
        xn = x.numpy()
        gb = n * xn.nbytes / 1e9
        store_write(work / "warmup", x, 2, durable=False)  # first-use imports, untimed
        shutil.rmtree(work / "warmup")
        print(f"writing {gb:.2f} GB = {n * BATCH_ROWS} rows x {UNITS} float32 units per method")
        times: dict[str, list[float]] = {k: [] for k in ("raw", "zarr", "store", "fast")}
        reads: dict[str, list[float]] = {k: [] for k in ("raw", "seq", "mb", "seq_nv", "mb_nv")}
        for _ in range(args.repeats):  # interleaved, so drifts of the machine hit all alike
            _sync()
            times["raw"].append(raw_write(work / "raw.bin", xn, n))
            _sync()
            times["zarr"].append(zarr_write(work / "zarr", xn, n))
            shutil.rmtree(work / "zarr")
            _sync()
            times["store"].append(store_write(work / "store", x, n, durable=True))
            _sync()
            times["fast"].append(store_write(work / "store_fast", x, n, durable=False))
            shutil.rmtree(work / "store_fast")
            reads["raw"].append(raw_read(work / "raw.bin"))
            seq, mb = store_read(work / "store")
            reads["seq"].append(seq)
            reads["mb"].append(mb)
            seq, mb = store_read(work / "store", verify=False)
            reads["seq_nv"].append(seq)
            reads["mb_nv"].append(mb)
            (work / "raw.bin").unlink()
            shutil.rmtree(work / "store")
        t = {k: statistics.median(v) for k, v in times.items()}
        r = {k: statistics.median(v) for k, v in reads.items()}

        def row(name: str, secs: float, floor: float) -> list[object]:
            return [name, f"{secs:.2f}", f"{gb / secs:.2f}", f"{floor / secs:.2f}"]

        print(f"medians of {args.repeats} interleaved runs")
        print()
        print(
            table(
                ["write", "seconds", "GB/s", "throughput vs raw"],
                [
                    row("raw file write + fsync (floor)", t["raw"], t["raw"]),
                    row("bare zarr array + fsync", t["zarr"], t["raw"]),
                    row("ActivationStore, durable=True", t["store"], t["raw"]),
                    row("ActivationStore, durable=False", t["fast"], t["raw"]),
                ],
            )
        )
        print()
        print(
            table(
                ["read (page cache)", "seconds", "GB/s", "throughput vs raw"],
                [
                    row("raw file read (floor)", r["raw"], r["raw"]),
                    row("store.iter_chunks (crc32 checked)", r["seq"], r["raw"]),
                    row("store.iter_chunks, verify=False", r["seq_nv"], r["raw"]),
                    row("store.minibatches, shuffled (crc32 checked)", r["mb"], r["raw"]),
                    row("store.minibatches, shuffled, verify=False", r["mb_nv"], r["raw"]),
                ],
            )
        )

        rows = []
        peaks: dict[str, list[float]] = {"write": [], "read": []}
        base_batches = _n_batches(args.rss_gb)
        for scale in (1, 10):
            path = work / f"rss{scale}"
            batches = base_batches * scale
            w = run_child("write", path, batches)
            r = run_child("read", path, batches)
            shutil.rmtree(path)
            shutil.rmtree(path.with_name(path.name + "-warmup"))
            size = batches * xn.nbytes / 1e9
            for kind, res in (("write", w), ("read (minibatches)", r)):
                peaks[kind.split()[0]].append(res["peak_rss_mb"])
                rows.append(
                    [kind, f"{scale}x", f"{size:.2f}", f"{res['rss_start_mb']:.0f}",
                     f"{res['peak_rss_mb']:.0f}"]
                )  # fmt: skip
        print()
        print(table(["workload", "rows", "store GB", "RSS at start MiB", "peak RSS MiB"], rows))
        print()
        for kind, (one, ten) in peaks.items():
            print(f"peak RSS {kind}: 10x / 1x = {ten / one:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
