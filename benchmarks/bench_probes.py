"""Probes side by side with the scikit-learn loops a user would write, on the same rows.

Three workloads, each timed for neuronatlas and for plain scikit-learn on identical data, with
the results compared (same folds → same scores):

1. logistic probe, 5-fold CV over 6 values of C (``cv_logistic``: all folds of one C in one
   L-BFGS problem, warm starts along C, float32) vs ``for C: cross_val_score(make_pipeline(
   StandardScaler(), LogisticRegression(C=C, max_iter=1000)), X, y, cv=folds)``;
2. ridge probe, 5-fold CV over 7 alphas (``cv_ridge``: one Gram matrix per fold) vs the
   same loop with ``Ridge``;
3. k-sparse probing, k = 1…64 (``sparse_probe``) vs a numpy mean-difference ranking and one
   ``LogisticRegression`` per k.

Rows are a balanced sample of a real atlas's activation store when ``--atlas`` is given (site
and label as below), else synthetic GELU-like activations shaped like a MiniLM MLP site
(1536 units) with a planted binary feature.

    .venv/bin/python benchmarks/bench_probes.py                      # 8,000 x 1,536 synthetic
    .venv/bin/python benchmarks/bench_probes.py --atlas atlases/minilm-store \\
        --site encoder.layer.3.output.dense:input --label code --rows 8000

Times are wall-clock on whatever else the machine runs; compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import OUT, machine, markdown_table

C_GRID = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
ALPHAS = [1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5]
KS = [1, 2, 4, 8, 16, 32, 64]


def synthetic(rows: int, units: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(rows) % 2 == 0
    x = rng.normal(size=(rows, units)).astype(np.float32)
    x += 0.15 * np.outer(y - 0.5, rng.normal(size=units)).astype(np.float32)  # spread signal
    x[:, :8] += (0.6 * y[:, None]).astype(np.float32)  # a few stronger neurons
    x = x * 0.5 * (1 + np.tanh(0.8 * x))  # GELU-like
    return x, y.astype(int)


def from_atlas(path: str, site: str, label: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    from neuronatlas.concepts._common import atlas_store, to_atlas
    from neuronatlas.concepts._data import labelled_rows, read_rows
    from neuronatlas.concepts._labels import token_labels

    atlas = to_atlas(path)
    store = atlas_store(atlas)
    table, spec = token_labels(atlas, label)
    sample = labelled_rows(store, table, task=spec.task, max_rows=rows)
    x, finite = read_rows(store, site, sample.rows)
    return x, sample.label[finite].astype(int)


def clock(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8000)
    ap.add_argument("--units", type=int, default=1536)
    ap.add_argument("--atlas")
    ap.add_argument("--site", default="encoder.layer.3.output.dense:input")
    ap.add_argument("--label", default="code")
    args = ap.parse_args()

    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from neuronatlas.concepts import sparse_probe
    from neuronatlas.concepts._linear import cv_logistic, cv_ridge, kfold
    from neuronatlas.concepts._probes import split
    from neuronatlas.concepts._sparse_probing import f1_score

    if args.atlas:
        x, y = from_atlas(args.atlas, args.site, args.label, args.rows)
        source = f"{args.atlas} {args.site} label {args.label}"
    else:
        x, y = synthetic(args.rows, args.units)
        source = "synthetic GELU-like activations, planted binary feature"
    print(f"{len(x):,} rows x {x.shape[1]:,} units ({source}); {machine()}")
    fold = kfold(len(y), 5, 0, y)
    cv = [(np.flatnonzero(fold != j), np.flatnonzero(fold == j)) for j in range(5)]
    rows = []

    t_ours, ours = clock(lambda: cv_logistic(x, y, fold, C_GRID))

    def sk_logistic():
        return np.array([
            cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000)),
                            x, y, cv=cv)
            for c in C_GRID
        ])  # fmt: skip

    t_sk, ref = clock(sk_logistic)
    diff = float(np.abs(ours.mean(1) - ref.mean(1)).max())
    rows.append(["logistic CV (6 C x 5 folds)", f"{t_ours:.2f}", f"{t_sk:.2f}",
                 f"{t_sk / t_ours:.2f}x", f"{diff:.4f}"])  # fmt: skip

    target = x[:, :8].sum(1).astype(np.float64) + y
    t_ours, ours = clock(lambda: cv_ridge(x, target, fold, ALPHAS))

    def sk_ridge():
        return np.array([
            cross_val_score(make_pipeline(StandardScaler(), Ridge(alpha=a)), x, target, cv=cv)
            for a in ALPHAS
        ])  # fmt: skip

    t_sk, ref = clock(sk_ridge)
    diff = float(np.abs(ours.mean(1) - ref.mean(1)).max())
    rows.append(["ridge CV (7 alpha x 5 folds)", f"{t_ours:.2f}", f"{t_sk:.2f}",
                 f"{t_sk / t_ours:.2f}x", f"{diff:.2e}"])  # fmt: skip

    t_ours, res = clock(lambda: sparse_probe(x, y, ks=KS, n_candidates=0))

    def sk_sparse():
        test = split(len(y), 0.2, 0, y.astype(bool))
        xtr, ytr, xte, yte = x[~test], y[~test], x[test], y[test]
        order = np.argsort(-np.abs(xtr[ytr == 1].mean(0) - xtr[ytr == 0].mean(0)), kind="stable")
        out = []
        for k in KS:
            m = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
            m.fit(xtr[:, order[:k]], ytr)
            out.append(f1_score(m.predict(xte[:, order[:k]]) == 1, yte == 1))
        return np.array(out)

    t_sk, ref = clock(sk_sparse)
    diff = float(np.abs(res.curve["f1"].to_numpy() - ref).max())
    rows.append(["k-sparse probing (k = 1..64)", f"{t_ours:.2f}", f"{t_sk:.2f}",
                 f"{t_sk / t_ours:.2f}x", f"{diff:.4f}"])  # fmt: skip

    table = markdown_table(
        ["workload", "neuronatlas s", "scikit-learn s", "speed-up", "max |score diff|"], rows
    )
    print(table)
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_probes.json").write_text(
        json.dumps({"rows": len(x), "units": x.shape[1], "source": source, "table": rows}, indent=2)
    )


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
