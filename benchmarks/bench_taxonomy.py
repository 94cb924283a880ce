"""Cost of the unit taxonomy's accumulator (TaxonomyStats) on MiniLM, as a ratio to the forward.

Maps the packaged MiniLM over ~50k tokens of Python's documentation (windows of 256 tokens,
batches of 32) at the six ``mlp`` sites (1536 units each). For every batch, in the same run:

1. the bare forward pass (no hooks), timed;
2. the forward pass with the recorder attached, then ``UnitStats.update`` of every site, timed;
3. ``TaxonomyStats.update`` of every site on the same activations, timed, split into its
   positional, token/bigram and massive-activation parts.

Reports seconds and the ratio of each pipeline to the bare forward pass, and the memory of
the accumulator states.

    .venv/bin/python benchmarks/bench_taxonomy.py                  # ~50k tokens, CPU
    .venv/bin/python benchmarks/bench_taxonomy.py --tokens 200000 --device cuda

Times are wall-clock on whatever else the machine is doing; compare rows of one run.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from _common import machine, markdown_table, minilm_batches, peak_rss_mb

from neuronatlas.data import bookkeeping_for
from neuronatlas.record import Recorder
from neuronatlas.sites import resolve_sites
from neuronatlas.stats import SiteBatch, UnitStats
from neuronatlas.units import TaxonomyStats

PARTS = {"_update_positions": "positional", "_update_tokens": "token + bigram",
         "_update_massive": "massive"}  # fmt: skip


def timed_parts(ts: TaxonomyStats, sync, times: dict[str, float]) -> None:
    """Wrap the accumulator's three parts with timers (instance attributes, this run only)."""
    for method, label in PARTS.items():
        inner = getattr(ts, method)

        def wrapper(*args, _inner=inner, _label=label):
            t = time.perf_counter()
            out = _inner(*args)
            sync()
            times[_label] += time.perf_counter() - t
            return out

        setattr(ts, method, wrapper)


def state_mib(obj) -> float:
    """MiB held in tensors by an object's attributes (following lists and dicts)."""

    def size(v) -> int:
        if isinstance(v, torch.Tensor):
            return v.numel() * v.element_size()
        if isinstance(v, (list, tuple)):
            return sum(size(x) for x in v)
        if isinstance(v, dict):
            return sum(size(x) for x in v.values())
        return 0

    return sum(size(v) for v in vars(obj).values()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=50_000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    loaded, batches = minilm_batches(args.tokens)
    model = loaded.model.to(dev).eval()
    sites = resolve_sites(model, "mlp")
    vocab = len(loaded.tokenizer)
    t = defaultdict(float)
    stats: dict[str, UnitStats] = {}
    tax: dict[str, TaxonomyStats] = {}
    n_tokens = 0
    with torch.inference_mode():
        warm = batches[0].to(dev)
        model(*warm.args, **warm.kwargs)
        for batch in batches:
            batch = batch.to(dev)
            n_tokens += batch.n_tokens
            sync()
            t0 = time.perf_counter()
            model(*batch.args, **batch.kwargs)
            sync()
            t["forward"] += time.perf_counter() - t0
            with Recorder(model, sites) as rec:
                t0 = time.perf_counter()
                model(*batch.args, **batch.kwargs)
                acts = rec.pop()
                sync()
                t["forward + record"] += time.perf_counter() - t0
            site_batches = []
            for site in sites:
                values = acts[site.name]
                doc, pos, mask = bookkeeping_for(batch, int(values.shape[1]))
                site_batches.append((site.name, SiteBatch(values, mask, doc, pos, batch.token_id)))
            t0 = time.perf_counter()
            for name, sb in site_batches:
                if name not in stats:
                    stats[name] = UnitStats(sb.n_units, device=dev)
                stats[name].update(sb)
            sync()
            t["UnitStats"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            for name, sb in site_batches:
                if name not in tax:
                    tax[name] = TaxonomyStats(sb.n_units, max_pos=256, vocab_size=vocab, device=dev)
                    timed_parts(tax[name], sync, t)
                tax[name].update(sb)
            sync()
            t["TaxonomyStats"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    for acc in tax.values():
        acc.result()
    t["TaxonomyStats.result (once)"] = time.perf_counter() - t0

    fwd = t["forward"]
    base = t["forward + record"] + t["UnitStats"]
    rows = [
        ["bare forward", f"{fwd:.2f}", "1.00"],
        ["forward + record + UnitStats", f"{base:.2f}", f"{base / fwd:.2f}"],
        ["... + TaxonomyStats", f"{base + t['TaxonomyStats']:.2f}",
         f"{(base + t['TaxonomyStats']) / fwd:.2f}"],
        ["TaxonomyStats alone", f"{t['TaxonomyStats']:.2f}", f"{t['TaxonomyStats'] / fwd:.2f}"],
        *[[f"  of which {label}", f"{t[label]:.2f}", f"{t[label] / fwd:.2f}"]
          for label in PARTS.values()],
        ["TaxonomyStats.result (once)", f"{t['TaxonomyStats.result (once)']:.2f}", ""],
    ]  # fmt: skip
    print(f"MiniLM, {n_tokens} tokens of Python docs, {len(batches)} batches of 32 x 256, "
          f"{len(sites)} mlp sites x 1536 units; {machine()}")  # fmt: skip
    print()
    print(markdown_table(["pipeline", "seconds", "x forward"], rows))
    print()
    mem_tax = sum(state_mib(a) for a in tax.values())
    mem_stats = sum(state_mib(acc) for s in stats.values() for acc in s.accumulators.values())
    print(
        f"state: TaxonomyStats {mem_tax:.1f} MiB ({mem_tax / len(tax):.1f} per site), "
        f"UnitStats {mem_stats:.1f} MiB; peak RSS {peak_rss_mb():.0f} MiB"
    )


if __name__ == "__main__":
    main()
