"""ICE on a small CNN trained on scikit-learn's digits: fidelity of NMF vs PCA vs k-means.

"Invertible Concept-based Explanations for CNN Models with Non-negative Concept Activation
Vectors" (Zhang et al., 2021) factorizes a CNN's post-ReLU feature maps into concepts, rebuilds
the feature maps from the concept scores and measures the model's accuracy with them
(fidelity), comparing NMF, PCA and k-means at several numbers of concepts.

    .venv/bin/python docs/replications/ice-digits/run.py        # ~1-2 min on 2 CPU cores

Writes ``fidelity.csv``, ``fidelity.md``, ``fidelity.png`` and ``heatmaps.png`` beside itself.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from neuronatlas.concepts import concept_maps, fidelity_table, fit_concepts, save_heatmaps

HERE = Path(__file__).parent
SITE = "relu3"  # post-ReLU feature maps (64 channels, 4x4)
N_CONCEPTS = (2, 4, 8, 16, 32)


def digits_cnn() -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 16, 3, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(16, 32, 3, padding=1),
            relu2=nn.ReLU(),
            pool=nn.MaxPool2d(2),
            conv3=nn.Conv2d(32, 64, 3, padding=1),
            relu3=nn.ReLU(),
            flat=nn.Flatten(),
            fc=nn.Linear(64 * 4 * 4, 10),
        )
    )


def digits(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target)
    return train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def plot(table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for method, g in table.groupby("method", sort=False):
        ax.plot(g["n_concepts"], g["accuracy"], marker="o", label=method)
    ax.axhline(table["original_accuracy"].iloc[0], color="gray", ls="--", label="original")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concepts")
    ax.set_ylabel("test accuracy with rebuilt maps")
    ax.set_title("ICE fidelity, digits CNN (relu3)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    xtr, xte, ytr, yte = digits()
    model = digits_cnn()
    train(model, xtr, ytr, epochs=30)
    table = fidelity_table(model, SITE, xtr, xte, yte, n_concepts=N_CONCEPTS, seed=0)
    table.to_csv(HERE / "fidelity.csv", index=False)
    wide = table.pivot(index="n_concepts", columns="method", values="accuracy")[
        ["nmf", "pca", "kmeans"]
    ]
    agree = table.pivot(index="n_concepts", columns="method", values="agreement")[
        ["nmf", "pca", "kmeans"]
    ]
    err = table.pivot(index="n_concepts", columns="method", values="relative_error")[
        ["nmf", "pca", "kmeans"]
    ]
    lines = [
        f"Original test accuracy: {table['original_accuracy'].iloc[0]:.4f} "
        f"({len(yte)} test images)",
        "",
        "| concepts | acc NMF | acc PCA | acc k-means | agree NMF | agree PCA | agree k-means "
        "| rel. err NMF | rel. err PCA | rel. err k-means |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k in wide.index:
        cells = [f"{wide.loc[k, m]:.4f}" for m in wide.columns]
        cells += [f"{agree.loc[k, m]:.4f}" for m in agree.columns]
        cells += [f"{err.loc[k, m]:.3f}" for m in err.columns]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    (HERE / "fidelity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(table, HERE / "fidelity.png")

    nmf = fit_concepts(model, SITE, xtr, method="nmf", n_concepts=8, seed=0)
    picks = torch.cat([torch.nonzero(yte == d)[0] for d in range(10)])
    maps = concept_maps(model, SITE, nmf, xte[picks])
    save_heatmaps(
        xte[picks].numpy(), maps, HERE / "heatmaps.png", titles=[f"digit {d}" for d in range(10)]
    )


if __name__ == "__main__":
    main()
