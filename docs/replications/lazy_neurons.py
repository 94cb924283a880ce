"""Replicate the trend of "The Lazy Neuron Phenomenon" (Li et al., 2022) on small ReLU MLPs.

Trains ReLU MLPs of several widths and depths on scikit-learn's bundled digits (offline), then
measures the fraction of nonzero hidden activations per layer on held-out digits with
``neuronatlas.units.survey_units`` and ``layer_density`` — before training (at
initialization) and after. Writes ``lazy-neurons.png`` and ``lazy-neurons.json`` next to this
file and prints the tables used in ``lazy-neurons.md``.

    .venv/bin/python docs/replications/lazy_neurons.py     # 1 to 2.5 minutes on 2 cores
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neuronatlas.units import label_units, layer_density, survey_units

HERE = Path(__file__).parent
WIDTHS = (32, 64, 128, 256, 512, 1024)
DEPTHS = (2, 4, 8)
EPOCHS = 30
SEED = 0


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standardized 8x8 digits: 1347 training and 450 test images (sklearn's split, seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=450, random_state=SEED, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    as_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return (as_t(scaler.transform(x_tr)), torch.tensor(y_tr), as_t(scaler.transform(x_te)),
            torch.tensor(y_te))  # fmt: skip


def mlp(width: int, depth: int) -> nn.Sequential:
    """``depth`` hidden ReLU layers of ``width`` units: fc0, act0, ..., head."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    d_in = 64
    for i in range(depth):
        layers[f"fc{i}"] = nn.Linear(d_in, width)
        layers[f"act{i}"] = nn.ReLU()
        d_in = width
    layers["head"] = nn.Linear(d_in, 10)
    return nn.Sequential(layers)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def densities(model: nn.Module, x: torch.Tensor, depth: int) -> tuple[list[float], list[float]]:
    """Per hidden layer on ``x``: the fraction of nonzero activations (ReLU: nonzero = > 0)
    and the fraction of dead units (never active on ``x``)."""
    sites = [f"act{i}" for i in range(depth)]
    survey = survey_units(model, [x], sites=sites, top_k=1, context=0, taxonomy=False)
    units, _ = label_units(survey.units)
    table = layer_density(units)
    return table["density"].tolist(), table["frac_dead"].tolist()


def main() -> None:
    torch.manual_seed(SEED)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    x_tr, y_tr, x_te, y_te = digits()
    results = []
    started = time.perf_counter()
    for depth in DEPTHS:
        for width in WIDTHS:
            torch.manual_seed(SEED)
            model = mlp(width, depth).eval()
            init, _ = densities(model, x_te, depth)
            t = time.perf_counter()
            train(model, x_tr, y_tr)
            with torch.no_grad():
                acc = float((model(x_te).argmax(1) == y_te).float().mean())
            trained, dead = densities(model, x_te, depth)
            results.append({"width": width, "depth": depth, "test_accuracy": acc,
                            "init": init, "trained": trained, "dead": dead,
                            "train_s": round(time.perf_counter() - t, 1)})  # fmt: skip
            print(f"width {width:5d} depth {depth}: acc {acc:.3f}, nonzero init "
                  f"{100 * np.mean(init):.1f}% -> trained {100 * np.mean(trained):.1f}%, dead "
                  f"{100 * np.mean(dead):.1f}% "
                  f"(per layer {[round(100 * d, 1) for d in trained]})", flush=True)  # fmt: skip
    total = time.perf_counter() - started
    summary = {"epochs": EPOCHS, "seed": SEED, "total_s": round(total, 1), "results": results}
    (HERE / "lazy-neurons.json").write_text(json.dumps(summary, indent=1))
    plot(results)
    print(f"\ntotal {total:.0f} s\n")
    for title, cell in (
        ("nonzero activations, trained (at init)",
         lambda r: f"{100 * np.mean(r['trained']):.1f}% ({100 * np.mean(r['init']):.0f}%)"),
        ("dead units, trained", lambda r: f"{100 * np.mean(r['dead']):.1f}%"),
        ("test accuracy", lambda r: f"{r['test_accuracy']:.3f}"),
    ):  # fmt: skip
        print(f"{title}:\n")
        print("| depth \\ width | " + " | ".join(str(w) for w in WIDTHS) + " |")
        print("| --- |" + " --- |" * len(WIDTHS))
        for depth in DEPTHS:
            row = [r for r in results if r["depth"] == depth]
            print(f"| {depth} | " + " | ".join(cell(r) for r in row) + " |")
        print()


def plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for depth, marker in zip(DEPTHS, "osD", strict=True):
        rows = [r for r in results if r["depth"] == depth]
        ax1.plot([r["width"] for r in rows], [100 * np.mean(r["trained"]) for r in rows],
                 marker=marker, label=f"{depth} layers, trained")  # fmt: skip
        ax1.plot([r["width"] for r in rows], [100 * np.mean(r["init"]) for r in rows],
                 marker=marker, ls=":", alpha=0.5, color=ax1.lines[-1].get_color(),
                 label=f"{depth} layers, at init")  # fmt: skip
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("width (hidden units per layer)")
    ax1.set_ylabel("nonzero activations (%)")
    ax1.set_title("Mean over layers, held-out digits")
    ax1.legend(fontsize=7)
    widest = max(WIDTHS)
    for depth, marker in zip(DEPTHS, "osD", strict=True):
        r = next(r for r in results if r["depth"] == depth and r["width"] == widest)
        ax2.plot(range(1, depth + 1), [100 * d for d in r["trained"]], marker=marker,
                 label=f"{depth} layers")  # fmt: skip
    ax2.set_xlabel("layer")
    ax2.set_ylabel("nonzero activations (%)")
    ax2.set_title(f"Per layer, width {widest}, trained")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "lazy-neurons.png", dpi=110)


if __name__ == "__main__":
    main()
