"""SAE training side by side with SAELens: throughput, variance explained, MMCS, dead latents.

Both train a TopK SAE (k = 16, 2048 latents, batch 4096, Adam lr 4e-4, constant schedule) for
one pass over the same stream of synthetic superposition data: 1024 true unit features in 256
dimensions, each active with p = 0.01, magnitude U(0, 1) when active (batches generated from
one seed, identical for both). SAELens runs its own ``SAETrainer`` with the settings of its
``train_toy_sae`` (TopK defaults: AuxK coefficient 1, dead window 1000 steps); neuronatlas runs
``train_sae`` with its defaults (sparse decoding, AuxK α = 1/32 with a dead window of
10 batches, input normalization). Training throughput excludes generating the data (timed
separately and subtracted for both). Both SAEs are then evaluated on the same 65,536 held-out
inputs: variance explained, MMCS (mean over the true features of the best cosine with a decoder
row) and dead latents (never active on the held-out inputs).

    .venv/bin/python benchmarks/bench_sae.py                       # full size: 2M samples
    .venv/bin/python benchmarks/bench_sae.py --samples 200000      # a quick check

Times are wall-clock on whatever else the machine is doing; compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import OUT, machine, markdown_table

from neuronatlas.sae import SyntheticFeatures, create_sae, mmcs, train_sae


class TimedStream:
    """``n_batches`` synthetic batches; the time spent making them is added to ``data_s``."""

    def __init__(self, seed: int, batch_size: int, n_batches: int) -> None:
        self.data = SyntheticFeatures(n_features=1024, d=256, p=0.01, seed=seed)
        self.batch_size, self.left, self.data_s = batch_size, n_batches, 0.0

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        if self.left == 0:
            raise StopIteration
        t = time.perf_counter()
        x = self.data.batch(self.batch_size)
        self.data_s += time.perf_counter() - t
        self.left -= 1
        return x


@torch.no_grad()
def evaluate(
    encode: Callable[[torch.Tensor], torch.Tensor],
    decode: Callable[[torch.Tensor], torch.Tensor],
    w_dec: torch.Tensor,
    true: torch.Tensor,
    held_out: list[torch.Tensor],
) -> dict[str, float]:
    err = tot = 0.0
    n = 0
    s1 = torch.zeros(held_out[0].shape[1], dtype=torch.float64)
    fired = torch.zeros(w_dec.shape[0], dtype=torch.bool)
    l0 = 0.0
    for x in held_out:
        z = encode(x)
        x_hat = decode(z)
        err += float((x_hat - x).double().pow(2).sum())
        tot += float(x.double().pow(2).sum())
        s1 += x.double().sum(0)
        n += len(x)
        fired |= (z > 0).any(0)
        l0 += float((z > 0).sum())
    var = tot - float(s1.pow(2).sum()) / n
    return {
        "variance_explained": 1 - err / var,
        "mmcs": mmcs(w_dec, true),
        "dead": int((~fired).sum()),
        "l0": l0 / n,
    }


def run_saelens(args: argparse.Namespace, n_batches: int) -> dict[str, float]:
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(args.seed)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=256, d_sae=args.width, k=args.k))
    stream = TimedStream(args.seed, args.batch_size, n_batches)
    cfg = SAETrainerConfig(
        n_checkpoints=0,
        checkpoint_path=None,
        save_final_checkpoint=False,
        total_training_samples=n_batches * args.batch_size,
        device="cpu",
        autocast=False,
        lr=args.lr,
        lr_end=args.lr,
        lr_scheduler_name="constant",
        lr_warm_up_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        lr_decay_steps=0,
        n_restart_cycles=1,
        train_batch_size_samples=args.batch_size,
        dead_feature_window=1000,
        feature_sampling_window=2000,
        logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=2**31 - 1),
        n_batches_for_norm_estimate=1000,
    )  # fmt: skip  (the settings of sae_lens.synthetic.train_toy_sae)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SAETrainer(cfg=cfg, sae=sae, data_provider=stream).fit()
    total = time.perf_counter() - t
    sae.eval()
    return {"total_s": total, "data_s": stream.data_s, "sae": sae}


def run_ours(args: argparse.Namespace, n_batches: int) -> dict[str, float]:
    torch.manual_seed(args.seed)
    settings = {
        "topk": {"k": args.k},
        "batchtopk": {"k": float(args.k)},
        "relu": {"l1_coefficient": args.l1},
        "jumprelu": {
            "l0_coefficient": args.l0,
            "init_threshold": args.init_threshold,
            "bandwidth": args.bandwidth,
        },
    }[args.arch]
    sae = create_sae(args.arch, 256, args.width, seed=args.seed, **settings)
    stream = TimedStream(args.seed, args.batch_size, n_batches)
    t = time.perf_counter()
    train_sae(sae, stream, batch_size=args.batch_size, lr=args.lr, device="cpu", log_every=50)
    total = time.perf_counter() - t
    return {"total_s": total, "data_s": stream.data_s, "sae": sae}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2_000_000)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--eval-samples", type=int, default=65536)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--arch", default="topk", help="neuronatlas's architecture (SAELens: topk)")
    ap.add_argument("--l1", type=float, default=5.0, help="L1 coefficient (--arch relu)")
    ap.add_argument("--l0", type=float, default=2.0, help="L0 coefficient (--arch jumprelu)")
    ap.add_argument("--init-threshold", type=float, default=0.01, help="θ at init (jumprelu)")
    ap.add_argument("--bandwidth", type=float, default=0.05, help="ε (jumprelu)")
    ap.add_argument(
        "--trainers", default="SAELens,neuronatlas", help="comma-separated: SAELens, neuronatlas"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_batches = max(1, args.samples // args.batch_size)
    samples = n_batches * args.batch_size
    truth = SyntheticFeatures(n_features=1024, d=256, p=0.01, seed=args.seed)
    held = SyntheticFeatures(n_features=1024, d=256, p=0.01, seed=args.seed)
    held._gen.manual_seed(10_000 + args.seed)  # same features, other inputs
    held_out = [held.batch(4096) for _ in range(max(1, args.eval_samples // 4096))]

    results = {}
    for name, fn in (("SAELens", run_saelens), ("neuronatlas", run_ours)):
        if name not in args.trainers.split(","):
            continue
        r = fn(args, n_batches)
        sae = r.pop("sae")
        r.update(evaluate(sae.encode, sae.decode, sae.W_dec, truth.features, held_out))
        r["train_samples_per_s"] = samples / max(r["total_s"] - r["data_s"], 1e-9)
        r["samples_per_s"] = samples / r["total_s"]
        results[name] = r
        print(f"{name}: {json.dumps({k: round(v, 4) for k, v in r.items()})}", file=sys.stderr)

    rows = [
        [name, f"{r['train_samples_per_s']:,.0f}", f"{r['samples_per_s']:,.0f}",
         f"{r['variance_explained']:.3f}", f"{r['mmcs']:.3f}", r["dead"], f"{r['l0']:.1f}"]
        for name, r in results.items()
    ]  # fmt: skip
    if len(results) == 2:
        a, b = results["SAELens"], results["neuronatlas"]
        rows.append([
            "ratio (neuronatlas / SAELens)",
            f"{b['train_samples_per_s'] / a['train_samples_per_s']:.2f}×",
            f"{b['samples_per_s'] / a['samples_per_s']:.2f}×",
            f"{b['variance_explained'] - a['variance_explained']:+.3f}",
            f"{b['mmcs'] - a['mmcs']:+.3f}", f"{b['dead'] - a['dead']:+d}", "",
        ])  # fmt: skip
    header = ["trainer", "train samples/s", "samples/s incl. data", "var. explained", "MMCS",
              "dead latents", "L0"]  # fmt: skip
    print(f"neuronatlas {args.arch}, SAELens topk; k={args.k}, {args.width} latents, batch {args.batch_size}, lr {args.lr}, "
          f"{samples:,} samples; {machine()}\n")  # fmt: skip
    print(markdown_table(header, rows))
    OUT.mkdir(exist_ok=True)
    (OUT / f"bench_sae_{args.arch}.json").write_text(
        json.dumps({"args": vars(args), "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
