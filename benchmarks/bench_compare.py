"""RSA at scale: correlation-distance RDMs of two representations + their Spearman comparison.

neuronatlas (``rdm`` from chunked float64 matmuls, ``compare_rdms(..., "spearman")``) against
rsatoolbox (``calc_rdm(method="correlation")`` and ``compare(method="spearman")``) on identical
data: two ``(stimulus, unit)`` representations (float32 values, compared in float64). Each side
runs in a fresh interpreter, so its peak memory is its own; the script checks that both give the
same RDMs and the same Spearman correlation (to 1e-10) and prints a markdown table.

    .venv/bin/python benchmarks/bench_compare.py                          # 5,000 x 1,536
    .venv/bin/python benchmarks/bench_compare.py --stimuli 1000 --units 256  # a quick check
    .venv/bin/python benchmarks/bench_compare.py --device cuda            # neuronatlas on a GPU

Times are wall-clock on whatever else the machine is doing; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, markdown_table, peak_rss_mb, run_child

TOL = 1e-10


def make_data(n: int, p: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two related representations (float32 values, as an activation store holds them)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p), dtype=np.float32)
    w = rng.standard_normal((p, p), dtype=np.float32) / np.sqrt(p)
    y = np.tanh(x @ w) + 0.5 * rng.standard_normal((n, p), dtype=np.float32)
    return x.astype(np.float64), y.astype(np.float64)


def child(side: str, n: int, p: int, out: Path, device: str) -> dict:
    if side == "neuronatlas":
        import torch

        from neuronatlas.compare import compare_rdms, rdm
    else:
        import rsatoolbox as rt
    x, y = make_data(n, p)
    base = peak_rss_mb()  # libraries imported and data made: what follows is the method's own
    if side == "neuronatlas":
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        sync()
        t0 = time.perf_counter()
        r1, r2 = rdm(xt, "correlation"), rdm(yt, "correlation")
        sync()
        t1 = time.perf_counter()
        rho = float(compare_rdms(r1, r2, "spearman"))
        sync()
        t2 = time.perf_counter()
        v1, v2 = r1.cpu().numpy(), r2.cpu().numpy()
    else:
        t0 = time.perf_counter()
        d1 = rt.rdm.calc_rdm(rt.data.Dataset(x), method="correlation")
        d2 = rt.rdm.calc_rdm(rt.data.Dataset(y), method="correlation")
        t1 = time.perf_counter()
        rho = float(rt.rdm.compare(d1, d2, method="spearman")[0, 0])
        t2 = time.perf_counter()
        v1, v2 = d1.get_vectors()[0], d2.get_vectors()[0]
    peak = peak_rss_mb()
    np.save(out / f"{side}_1.npy", v1)
    np.save(out / f"{side}_2.npy", v2)
    return {"rdm_s": t1 - t0, "spearman_s": t2 - t1, "rho": rho, "peak_mb": peak,
            "above_data_mb": peak - base}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stimuli", type=int, default=5000)
    ap.add_argument("--units", type=int, default=1536)
    ap.add_argument("--device", default="cpu", help="device of the neuronatlas side")
    ap.add_argument("--child", choices=["neuronatlas", "rsatoolbox"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        res = child(args.child, args.stimuli, args.units, Path(args.out), args.device)
        print(json.dumps(res))
        return

    common = ["--stimuli", str(args.stimuli), "--units", str(args.units), "--device", args.device]
    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for side in ("rsatoolbox", "neuronatlas"):
            res[side] = run_child(Path(__file__), [*common, "--child", side, "--out", tmp])
        diffs = [
            float(np.max(np.abs(np.load(f"{tmp}/neuronatlas_{k}.npy") - np.load(f"{tmp}/rsatoolbox_{k}.npy"))))
            for k in (1, 2)
        ]  # fmt: skip
    d_rho = abs(res["neuronatlas"]["rho"] - res["rsatoolbox"]["rho"])
    ref, new = res["rsatoolbox"], res["neuronatlas"]
    rows = []
    for side in ("rsatoolbox", "neuronatlas"):
        r = res[side]
        total = r["rdm_s"] + r["spearman_s"]
        rows.append([
            side + (f" ({args.device})" if side == "neuronatlas" else ""),
            f"{r['rdm_s']:.2f}", f"{r['spearman_s']:.2f}", f"{total:.2f}",
            f"{(ref['rdm_s'] + ref['spearman_s']) / total:.1f}x",
            f"{r['peak_mb']:,.0f}", f"{r['above_data_mb']:,.0f}", f"{r['rho']:.12f}",
        ])  # fmt: skip
    n_pairs = args.stimuli * (args.stimuli - 1) // 2
    print(f"RDMs (correlation distance) of two {args.stimuli:,} x {args.units:,} representations "
          f"({n_pairs:,} pairs each) + Spearman comparison. {machine()}")  # fmt: skip
    print()
    print(markdown_table(
        ["", "RDMs (s)", "Spearman (s)", "total (s)", "speed-up", "peak RSS (MiB)",
         "above the data (MiB)", "Spearman ρ"], rows))  # fmt: skip
    print()
    ok = max(diffs) <= TOL and d_rho <= TOL
    print(f"max |RDM difference| = {max(diffs):.2e}, |Δρ| = {d_rho:.2e} "
          f"({'same numbers' if ok else 'MISMATCH'} at {TOL:g})")  # fmt: skip
    if not ok:
        raise SystemExit(1)
    _ = new


if __name__ == "__main__":
    main()
