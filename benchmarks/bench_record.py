"""Cost of recording every MLP neuron of MiniLM with per-unit statistics, vs the alternatives.

All variants see the same pre-tokenized batches (Python's docs, window 256, batch 32). Each
variant runs in its own process, which times the bare forward pass and the variant interleaved
(3 times each) and reports the ratio of medians, plus its peak RSS before and after the variant.

Statistics, same for every variant: count, mean, variance, min, max, active fraction and the
exact top-20 exemplars per unit. ``neuronatlas (all)`` adds skew, kurtosis, quantiles with
histogram, non-finite counts and 10 tokens of context activations around each exemplar.

Run:  .venv/bin/python benchmarks/bench_record.py [--tokens 100000] [--ram-cache]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import (
    OUT,
    machine,
    markdown_table,
    median,
    minilm_batches,
    peak_rss_mb,
    run_child,
    timed,
)

K = 20
VARIANTS = {
    "neuronatlas-basic": "neuronatlas, same statistics",
    "neuronatlas-all": "neuronatlas, every accumulator",
    "hooks-numpy": "plain hooks, numpy after each forward",
    "nnsight": "nnsight trace + save, numpy after each forward",
    "ram-cache": "cache everything in RAM, then numpy",
}


# -- the variants -----------------------------------------------------------------------------


def bare(model, batches):
    with torch.inference_mode():
        for b in batches:
            model(**b.kwargs)


def neuronatlas_pass(model, batches, *, everything: bool):
    from neuronatlas import Recorder, resolve_sites
    from neuronatlas.data import bookkeeping_for
    from neuronatlas.stats import SiteBatch, UnitStats

    sites = resolve_sites(model, "mlp")
    opts = (
        dict(top_k=K, context=10)
        if everything
        else dict(top_k=K, context=0, quantiles=False, higher_moments=False)
    )
    stats = {s.name: UnitStats(1536, **opts) for s in sites}
    with Recorder(model, sites) as rec, torch.inference_mode():
        for b in batches:
            model(**b.kwargs)
            acts = rec.pop()
            doc, pos, mask = bookkeeping_for(b, b.mask.shape[1])
            for name, v in acts.items():
                stats[name].update(SiteBatch(v, mask, doc, pos))
    return {k: v.result() for k, v in stats.items()}


class NumpyStats:
    """What a careful user writes: float64 sums, running extremes, exact top-k by argpartition."""

    def __init__(self, n_units: int):
        self.count = 0
        self.s1 = np.zeros(n_units)
        self.s2 = np.zeros(n_units)
        self.mn = np.full(n_units, np.inf, dtype=np.float32)
        self.mx = np.full(n_units, -np.inf, dtype=np.float32)
        self.active = np.zeros(n_units, dtype=np.int64)
        self.top = np.full((K, n_units), -np.inf, dtype=np.float32)
        self.top_id = np.zeros((K, n_units), dtype=np.int64)

    def update(self, x: np.ndarray, ids: np.ndarray) -> None:
        self.count += x.shape[0]
        x64 = x.astype(np.float64)
        self.s1 += x64.sum(0)
        self.s2 += np.square(x64).sum(0)
        np.minimum(self.mn, x.min(0), out=self.mn)
        np.maximum(self.mx, x.max(0), out=self.mx)
        self.active += (x > 0).sum(0)
        vals = np.concatenate([self.top, x])
        idx = np.concatenate([self.top_id, np.broadcast_to(ids[:, None], x.shape)])
        part = np.argpartition(-vals, K - 1, axis=0)[:K]
        self.top = np.take_along_axis(vals, part, 0)
        self.top_id = np.take_along_axis(idx, part, 0)


def mlp_modules(model):
    return [layer.output.dense for layer in model.encoder.layer]


def hooks_numpy(model, batches):
    held: dict[int, torch.Tensor] = {}
    stats = [NumpyStats(1536) for _ in range(6)]
    handles = [
        m.register_forward_pre_hook(lambda mod, args, i=i: held.__setitem__(i, args[0]))
        for i, m in enumerate(mlp_modules(model))
    ]
    try:
        offset = 0
        with torch.inference_mode():
            for b in batches:
                model(**b.kwargs)
                keep = b.mask.reshape(-1).numpy()
                ids = np.arange(offset, offset + keep.size)[keep]
                offset += keep.size
                for i, t in held.items():
                    stats[i].update(t.reshape(-1, 1536).numpy()[keep], ids)
    finally:
        for h in handles:
            h.remove()
    return stats


def nnsight_pass(model, batches):
    from nnsight import NNsight

    traced = NNsight(model)
    stats = [NumpyStats(1536) for _ in range(6)]
    offset = 0
    with torch.inference_mode():
        for b in batches:
            saved: list = []
            with traced.trace(**b.kwargs):
                for i in range(6):
                    saved.append(traced.encoder.layer[i].E_output.dense.input.save())
            keep = b.mask.reshape(-1).numpy()
            ids = np.arange(offset, offset + keep.size)[keep]
            offset += keep.size
            for i, t in enumerate(saved):
                stats[i].update(t.reshape(-1, 1536).numpy()[keep], ids)
    return stats


def ram_cache(model, batches):
    held: dict[int, list[np.ndarray]] = {i: [] for i in range(6)}
    handles = [
        m.register_forward_pre_hook(lambda mod, args, i=i: held[i].append(args[0].numpy().copy()))
        for i, m in enumerate(mlp_modules(model))
    ]
    masks = []
    try:
        with torch.inference_mode():
            for b in batches:
                model(**b.kwargs)
                masks.append(b.mask.reshape(-1).numpy())
    finally:
        for h in handles:
            h.remove()
    keep = np.concatenate(masks)
    for i in range(6):
        x = np.concatenate([a.reshape(-1, 1536) for a in held[i]])[keep]
        held[i] = []
        s = NumpyStats(1536)
        s.update(x, np.arange(x.shape[0]))


def child(variant: str, tokens: int) -> dict:
    torch.manual_seed(0)
    loaded, batches = minilm_batches(tokens)
    model = loaded.model
    fn = {
        "neuronatlas-basic": lambda: neuronatlas_pass(model, batches, everything=False),
        "neuronatlas-all": lambda: neuronatlas_pass(model, batches, everything=True),
        "hooks-numpy": lambda: hooks_numpy(model, batches),
        "nnsight": lambda: nnsight_pass(model, batches),
        "ram-cache": lambda: ram_cache(model, batches),
    }[variant]
    bare(model, batches[:2])  # warm up
    bare_t = [timed(lambda: bare(model, batches))]
    rss_bare = peak_rss_mb()
    var_t = []
    for _ in range(3):
        var_t.append(timed(fn))
        bare_t.append(timed(lambda: bare(model, batches)))
    return {
        "variant": variant,
        "tokens": sum(b.n_tokens for b in batches),
        "bare_s": bare_t,
        "variant_s": var_t,
        "ratio": median(var_t) / median(bare_t),
        "rss_bare_mb": rss_bare,
        "rss_peak_mb": peak_rss_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--variants", default="neuronatlas-basic,neuronatlas-all,hooks-numpy,nnsight")
    ap.add_argument("--ram-cache", action="store_true", help="also run the RAM-cache variant")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tokens)))
        return
    variants = args.variants.split(",") + (["ram-cache"] if args.ram_cache else [])
    results = []
    for v in variants:
        print(f"running {v} …", file=sys.stderr, flush=True)
        results.append(run_child(Path(__file__), ["--child", v, "--tokens", str(args.tokens)]))
    rows = [
        [
            VARIANTS[r["variant"]],
            f"{r['ratio']:.3f}×",
            f"{median(r['variant_s']):.1f} s",
            f"{median(r['bare_s']):.1f} s",
            f"{r['rss_peak_mb'] - r['rss_bare_mb']:+.0f} MiB",
        ]
        for r in results
    ]
    table = markdown_table(
        [
            "variant",
            "time / bare forward",
            "variant (median of 3)",
            "bare forward",
            "peak RSS over bare",
        ],
        rows,
    )
    print(
        f"MiniLM (6 × 1536 MLP neurons), {results[0]['tokens']:,} tokens of Python docs; {machine()}\n"
    )
    print(table)
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_record.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
