"""Time per batch of the per-unit statistics (UnitStats.update), per accumulator.

Feeds a few hundred ``(batch, pos, unit)`` float32 batches shaped like an MLP site of MiniLM
(32 rows x 128 positions x 1536 units, ~10% padding) through ``UnitStats`` with all
accumulators and with the cheap set, and prints the median milliseconds per batch spent in each
accumulator (the non-finite check and the flattening are the "shared" line).

    .venv/bin/python benchmarks/bench_stats.py                 # 300 batches on CPU
    .venv/bin/python benchmarks/bench_stats.py --device cuda --batches 500

Times are wall-clock medians on whatever else the machine is doing; compare rows of one run,
not numbers across machines.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch

from neuronatlas.stats import SiteBatch, UnitStats


def make_batch(i: int, shape: tuple[int, int, int], device: torch.device) -> SiteBatch:
    """GELU-like activations with heavy-tailed and dead units, and right-padded rows."""
    b, p, u = shape
    g = torch.Generator(device="cpu").manual_seed(i)
    x = torch.randn(b, p, u, generator=g)
    x[..., : u // 8] = x[..., : u // 8] ** 3  # heavy tails
    x = torch.nn.functional.gelu(x)
    x[..., -u // 16 :] = 0.0  # dead units
    lengths = torch.randint(p // 2, p + 1, (b,), generator=g)
    lengths[0] = p
    mask = torch.arange(p)[None, :] < lengths[:, None]
    doc = (torch.arange(b) + i * b)[:, None].expand(b, p)
    pos = torch.arange(p)[None, :].expand(b, p)
    return SiteBatch(x.to(device), mask.to(device), doc.to(device), pos.to(device))


def run(
    stats: UnitStats, shape: tuple[int, int, int], n_batches: int, device: torch.device, sync
) -> dict[str, list]:
    """Feed ``n_batches`` fresh batches (made outside the timed region); time each accumulator.

    Fresh data matter: the top-k gate only skips units whose batch max cannot enter their
    top k, which for exchangeable data happens for all but about ``k / batches`` of them.
    """
    times: dict[str, list[float]] = defaultdict(list)
    for i in range(n_batches):
        batch = make_batch(i, shape, device)
        sync()
        t0 = time.perf_counter()
        batch.has_nonfinite  # noqa: B018 - flatten + the shared non-finite check
        sync()
        t1 = time.perf_counter()
        times["shared (flat + non-finite check)"].append(t1 - t0)
        for name, acc in stats.accumulators.items():
            acc.update(batch)
            sync()
            t2 = time.perf_counter()
            times[name].append(t2 - t1)
            t1 = t2
        times["total"].append(t1 - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--shape", type=int, nargs=3, default=[32, 128, 1536], metavar=("B", "P", "U"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    shape = tuple(args.shape)
    n_valid = statistics.mean(int(make_batch(i, shape, dev).mask.sum()) for i in range(8))

    rows: dict[str, dict[str, float]] = {}
    for label, stats in (
        ("all", UnitStats(shape[2], device=dev)),
        ("cheap", UnitStats.cheap(shape[2], device=dev)),
    ):
        times = run(stats, shape, args.batches, dev, sync)
        for name, ts in times.items():
            rows.setdefault(name, {})[label] = 1e3 * statistics.median(ts)
            rows[name][label + " mean"] = 1e3 * statistics.mean(ts)

    print(
        f"UnitStats.update on {args.device} ({torch.get_num_threads()} threads), batches of "
        f"{shape} float32 (~{n_valid:.0f} valid positions x {shape[2]} units), "
        f"{args.batches} batches, ms per batch (median and mean; the mean includes the first "
        "batches, where every unit still fills its top k):\n"
    )
    order = ["shared (flat + non-finite check)", "nonfinite", "moments", "extremes", "topk"]
    order += ["activity", "quantiles", "total"]
    keys = ("all", "all mean", "cheap", "cheap mean")
    print(f"| {'accumulator':<34} | " + " | ".join(f"{k:>10}" for k in keys) + " |")
    print(f"| {'-' * 34} |" + "|".join(f" {'-' * 10}:" for _ in keys) + "|")
    for name in order:
        if name in rows:
            cells = [f"{rows[name][k]:10.2f}" if k in rows[name] else f"{'-':>10}" for k in keys]
            print(f"| {name:<34} | " + " | ".join(cells) + " |")
    per_s = n_valid / (rows["total"]["all"] / 1e3)
    print(f"\nall accumulators: {per_s:,.0f} positions/s per site")


if __name__ == "__main__":
    main()
