"""MiniLM's layers compared with each other, and with a simulated recording: the right layer wins.

1. The layer × layer linear CKA matrix of the packaged MiniLM over the documentation that ships
   with Python (259 sequences of 60,000 tokens; a stimulus = one sequence, its tokens' mean
   activation), with 95% bootstrap intervals over stimuli, saved into the atlas and drawn.
2. A simulated recording: 100 "voxels", each a random linear mix of the residual stream of one
   planted layer plus Gaussian noise of the same variance as the signal (SNR 1). Every site of
   the model is scored against it with linear CKA and with RSA (correlation-distance RDMs,
   Spearman), with permutation p-values and bootstrap intervals; the planted layer should rank
   first. Repeated for each of the six layers as the planted one, three noise seeds each.

Needs an atlas of MiniLM with stored activations (``neuronatlas map --keep-activations``); pass
a copy (the script writes its results into it):

    neuronatlas map --max-tokens 60000 --keep-activations --out /tmp/minilm   # ~30 s
    .venv/bin/python docs/replications/compare/minilm_layers.py --atlas /tmp/minilm

Writes ``cka-matrix.png``, ``recording.png`` and ``results.json`` next to this file and prints
the tables of ``README.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from neuronatlas.compare import (
    compare_atlases,
    compare_features,
    stimulus_docs,
    stimulus_features,
)

HERE = Path(__file__).parent
RESID = [f"encoder.layer.{i}" for i in range(6)]
PLANTED = "encoder.layer.3"


def short(site: str) -> str:
    return site.replace("encoder.layer.", "L").replace(".output.dense:input", " mlp")


def simulated_recording(x: torch.Tensor, n_voxels: int, snr: float, seed: int) -> np.ndarray:
    """``x W + noise``: each voxel a random mix of all units; noise variance = signal / snr."""
    g = torch.Generator().manual_seed(seed)
    signal = x.double() @ torch.randn(x.shape[1], n_voxels, generator=g, dtype=torch.float64)
    noise = torch.randn(signal.shape, generator=g, dtype=torch.float64)
    noise *= signal.std(0, keepdim=True) / np.sqrt(snr)
    return (signal + noise).numpy()


def plot_matrix(table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = list(dict.fromkeys(table["site_a"]))
    m = table.pivot(index="site_a", columns="site_b", values="value").loc[sites, sites].to_numpy()
    fig, ax = plt.subplots(figsize=(7.2, 6.2))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="magma")
    for i in range(len(sites)):
        for j in range(len(sites)):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if m[i, j] < 0.6 else "black")  # fmt: skip
    ax.set_xticks(range(len(sites)), [short(s) for s in sites], rotation=60, ha="right")
    ax.set_yticks(range(len(sites)), [short(s) for s in sites])
    ax.set_title("MiniLM, linear CKA between sites (259 sequences, mean-pooled)")
    fig.colorbar(im, ax=ax, fraction=0.046, label="CKA")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_recording(tables: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(5.2 * len(tables), 3.8))
    for ax, (measure, t) in zip(np.atleast_1d(axes), tables.items(), strict=True):
        xs = np.arange(len(t))
        colors = ["#d97706" if s == PLANTED else "#6366f1" for s in t["site_a"]]
        err = np.clip(np.vstack([t["value"] - t["ci_low"], t["ci_high"] - t["value"]]), 0, None)
        ax.bar(xs, t["value"], color=colors, yerr=err, capsize=2)
        ax.set_xticks(xs, [short(s) for s in t["site_a"]], rotation=60, ha="right")
        ax.set_ylabel(measure)
        ax.set_title(f"{measure} with the recording (planted: {short(PLANTED)})")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--atlas", required=True, help="a MiniLM atlas with stored activations (a copy)"
    )
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--perm", type=int, default=199)
    ap.add_argument("--voxels", type=int, default=100)
    ap.add_argument("--snr", type=float, default=1.0)
    args = ap.parse_args()
    t0 = time.perf_counter()

    # 1. layer x layer CKA with bootstrap intervals (saved in the atlas as compare/cka-self)
    layers = compare_atlases(args.atlas, args.atlas, measure="cka", n_boot=args.boot)
    plot_matrix(layers, HERE / "cka-matrix.png")
    t_layers = time.perf_counter() - t0

    # 2. a simulated recording from the planted layer; every site scored against it
    docs = stimulus_docs(args.atlas)["doc"].to_numpy()
    sites = list(dict.fromkeys(layers["site_a"]))
    rec = simulated_recording(stimulus_features(args.atlas, PLANTED), args.voxels, args.snr, 0)
    tables = {}
    for measure in ("cka", "rsa"):
        t = compare_atlases(args.atlas, {"recording": rec}, sites_a=sites, stimuli=docs,
                            measure=measure, n_perm=args.perm, n_boot=args.boot,
                            label="simulated", name=f"{measure}-recording")  # fmt: skip
        tables[measure] = t.reset_index(drop=True)
    plot_recording(tables, HERE / "recording.png")

    # 3. every resid layer planted in turn, three noise seeds: how often does it rank first?
    feats = {s: stimulus_features(args.atlas, s) for s in sites}  # read the store once
    wins = {m: 0 for m in ("cka", "rsa")}
    trials = []
    for planted in RESID:
        for seed in range(3):
            r = simulated_recording(feats[planted], args.voxels, args.snr, 100 + seed)
            for measure in wins:
                t = compare_features(feats, {"recording": r}, measure=measure)
                best = t.loc[t["value"].idxmax(), "site_a"]
                wins[measure] += best == planted
                trials.append({"planted": planted, "seed": seed, "measure": measure, "best": best})
    n_trials = len(RESID) * 3

    print(f"{len(docs)} stimuli; layer matrix in {t_layers:.1f} s, all in "
          f"{time.perf_counter() - t0:.1f} s\n")  # fmt: skip
    print("Linear CKA between consecutive residual layers (95% bootstrap CI):\n")
    print("| sites | CKA | CI |\n| --- | ---: | --- |")
    for a, b in itertools.pairwise(RESID):
        r = layers[(layers.site_a == a) & (layers.site_b == b)].iloc[0]
        print(f"| {short(a)} – {short(b)} | {r.value:.3f} | [{r.ci_low:.3f}, {r.ci_high:.3f}] |")
    for measure, t in tables.items():
        print(f"\n{measure} with the recording planted from {short(PLANTED)} "
              f"({args.voxels} voxels, SNR {args.snr:g}):\n")  # fmt: skip
        print(f"| site | {measure} | 95% CI | p |\n| --- | ---: | --- | ---: |")
        for r in t.itertuples():
            mark = " ← planted" if r.site_a == PLANTED else ""
            print(
                f"| {short(r.site_a)}{mark} | {r.value:.3f} | [{r.ci_low:.3f}, {r.ci_high:.3f}] | {r.p:.3g} |"
            )
        best = t.loc[t["value"].idxmax(), "site_a"]
        print(f"\nbest: {short(best)} ({'right' if best == PLANTED else 'WRONG'} layer)")
    print(f"\nPlanted layer ranked first: CKA {wins['cka']}/{n_trials}, RSA {wins['rsa']}/{n_trials} "
          "(6 planted layers x 3 noise seeds).")  # fmt: skip

    out = {
        "n_stimuli": len(docs),
        "settings": vars(args) | {"planted": PLANTED, "atlas": None},
        "layers": layers.to_dict(orient="records"),
        "recording": {m: t.to_dict(orient="records") for m, t in tables.items()},
        "wins": wins,
        "n_trials": n_trials,
        "trials": trials,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (HERE / "results.json").write_text(json.dumps(out, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
