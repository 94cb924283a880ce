"""k-sparse probing of real properties of the default corpus in MiniLM (plus probes, Net2Vec).

"Finding Neurons in a Haystack: Case Studies with Sparse Probing" (Gurnee et al., 2023): how
many MLP neurons does a linear probe need to read a feature? Here the features are properties
of Python's documentation that the tokens table supports: "token is inside a code example"
(``code``) and "token is a Python keyword used in code" (``keyword_in_code``).

    .venv/bin/neuronatlas map --max-tokens 60000 --sites mlp,resid --keep-activations \\
        --out atlases/minilm-store                      # the atlas, with its activation store
    .venv/bin/python docs/replications/sparse-probing/run.py atlases/minilm-store

Writes ``curve.csv``, ``neurons.csv``, ``probes.csv``, ``net2vec.csv``, ``results.md`` and
``curve.png`` beside itself, and the analyses into the atlas (``analyses/probes/``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from neuronatlas.concepts import net2vec_atlas, probe_atlas, sparse_probe_atlas

HERE = Path(__file__).parent
LABELS = ("code", "keyword_in_code")


def plot(curve: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(LABELS), figsize=(4.2 * len(LABELS), 3.4), squeeze=False)
    for ax, label in zip(axes[0], LABELS, strict=True):
        part = curve[(curve["label"] == label) & curve["site"].str.endswith(":input")]
        for layer, g in part.groupby("layer"):
            ax.plot(g["k"], g["f1"], marker="o", ms=3, label=f"MLP layer {layer}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (neurons)")
        ax.set_ylabel("test F1")
        ax.set_title(f"k-sparse probing: {label}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("atlas", type=Path, nargs="?")
    ap.add_argument("--max-rows", type=int, default=20_000)
    ap.add_argument("--probe-rows", type=int, default=8_000)
    ap.add_argument("--report-only", action="store_true", help="Redraw from the CSV files.")
    args = ap.parse_args()
    if args.report_only:
        read = [
            pd.read_csv(HERE / f) for f in ("curve.csv", "neurons.csv", "probes.csv", "net2vec.csv")
        ]
        report(*read)
        return
    curves, neurons, probes, n2v = [], [], [], []
    for label in LABELS:
        t = time.perf_counter()
        c, n = sparse_probe_atlas(args.atlas, label, max_rows=args.max_rows)
        print(f"{label}: k-sparse probing of 12 sites in {time.perf_counter() - t:.0f} s")
        curves.append(c.assign(label=label))
        neurons.append(n.assign(label=label))
        t = time.perf_counter()
        probes.append(probe_atlas(args.atlas, label, max_rows=args.probe_rows))
        print(f"{label}: linear probes in {time.perf_counter() - t:.0f} s")
        t = time.perf_counter()
        n2v.append(net2vec_atlas(args.atlas, label, max_rows=args.max_rows).assign(label=label))
        print(f"{label}: Net2Vec in {time.perf_counter() - t:.0f} s")
    curve = pd.concat(curves, ignore_index=True)
    neuron = pd.concat(neurons, ignore_index=True)
    probe = pd.concat(probes, ignore_index=True)
    net = pd.concat(n2v, ignore_index=True)
    curve.drop(columns="units").to_csv(HERE / "curve.csv", index=False)
    neuron.to_csv(HERE / "neurons.csv", index=False)
    probe.to_csv(HERE / "probes.csv", index=False)
    net.to_csv(HERE / "net2vec.csv", index=False)
    report(curve, neuron, probe, net)


def report(
    curve: pd.DataFrame, neuron: pd.DataFrame, probe: pd.DataFrame, net: pd.DataFrame
) -> None:
    plot(curve, HERE / "curve.png")
    lines = []
    for label in LABELS:
        part = curve[curve["label"] == label]
        wide = part.pivot(index="site", columns="k", values="f1")
        wide = wide.loc[[s for s in part["site"].unique()]]
        lines += [f"### {label}: test F1 vs k (mean-difference ranking)", ""]
        lines.append("| site | " + " | ".join(f"k={k}" for k in wide.columns) + " |")
        lines.append("|---" * (len(wide.columns) + 1) + "|")
        for site, row in wide.iterrows():
            lines.append(f"| {site} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
        # sorted by accuracy: on balanced rows a constant "yes" already scores F1 = 0.667
        best = neuron[neuron["label"] == label].sort_values("accuracy", ascending=False).head(5)
        lines += ["", "Best single neurons (k = 1, by test accuracy):", ""]
        lines += [
            f"- {r.site} unit {r.unit}: F1 {r.f1:.3f}, accuracy {r.accuracy:.3f}"
            + (" (candidate: F1 >= 0.8)" if r.candidate else "")
            for r in best.itertuples()
        ]
        p = probe[probe["label"] == label]
        q = net[net["label"] == label]
        lines += ["", "Linear probes (all units, accuracy on held-out rows) and Net2Vec:", ""]
        lines.append(
            "| site | accuracy | control | selectivity | shuffled | Net2Vec IoU (all units) "
            "| IoU best unit |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for r, s in zip(p.itertuples(), q.itertuples(), strict=True):
            lines.append(
                f"| {r.site} | {r.score:.3f} | {r.control_score:.3f} | {r.selectivity:+.3f} | "
                f"{r.shuffled_score:.3f} | {s.iou_combination:.3f} | {s.iou_best_unit:.3f} |"
            )
        lines.append("")
    (HERE / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
