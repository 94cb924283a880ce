"""Ridge encoding models: K-fold CV over an alpha grid, one alpha per target, many targets.

neuronatlas's ``ridge_cv`` (torch, float32) side by side with what a user has otherwise:

- scikit-learn: ``RidgeCV(alpha_per_target=True)`` only supports leave-one-out, not ``cv=5``
  (it raises), so the scikit-learn way is ``Ridge(alpha)`` on every fold and alpha (all targets
  at once, Cholesky) and the alpha picked per target by hand — what the tests check against;
- himalaya ``RidgeCV`` with its numpy backend, and with its torch backend in float32.

Every method sees the same data (``n`` stimuli × ``p`` features → ``t`` targets, built from a
seed), the same contiguous folds, the same alphas and the same selection score (R², mean over
folds); each runs in its own process, so its peak RSS is its own. The table gives the time, the
ratio to neuronatlas, the peak RSS, and the agreement with neuronatlas: the fraction of targets
given the same alpha and the largest difference of cross-validated R².

    .venv/bin/python benchmarks/bench_encoding.py --n 1000 --p 256 --targets 2000   # small check
    OMP_NUM_THREADS=16 .venv/bin/python benchmarks/bench_encoding.py                # full size

The full size is 5,000 × 1,536 → 10,000 targets, 5 folds, 10 alphas. Times are wall-clock on
whatever else the machine is doing; compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _common import OUT, machine, markdown_table, peak_rss_mb, run_child

METHODS = ("neuronatlas", "himalaya-torch-f32", "himalaya-numpy", "sklearn")


def make_data(n: int, p: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features and targets: a rank-32 linear read-out of the features, SNR varying by target."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g)
    a = torch.randn(p, 32, generator=g) / p**0.5
    b = torch.randn(32, t, generator=g) * torch.logspace(-1.5, 0.5, t)[None, :].sqrt()
    y = (x @ a) @ b + torch.randn(n, t, generator=g)
    return x.numpy(), y.numpy()


def run_method(method: str, args: argparse.Namespace) -> dict:
    import torch

    x, y = make_data(args.n, args.p, args.targets)
    alphas = np.logspace(-1, 6, args.alphas)
    t0 = time.perf_counter()
    if method == "neuronatlas":
        from neuronatlas.brain import ridge_cv

        res = ridge_cv(x, y, alphas=alphas, cv=args.folds, dtype=torch.float32,
                       device=args.device, refit=True)  # fmt: skip
        best, r2 = res.best_alpha.numpy(), res.r2.double().numpy()
    elif method.startswith("himalaya"):
        from himalaya.backend import set_backend
        from himalaya.ridge import RidgeCV
        from himalaya.scoring import r2_score

        backend = set_backend("torch" if "torch" in method else "numpy")
        xx, yy = (backend.asarray(x), backend.asarray(y))
        model = RidgeCV(alphas=alphas, cv=args.folds, fit_intercept=True,
                        solver_params={"score_func": r2_score})  # fmt: skip
        model.fit(xx, yy)
        best = backend.to_numpy(model.best_alphas_).astype(np.float64)
        r2 = backend.to_numpy(model.cv_scores_).astype(np.float64) - 1e-10 * np.log(best)
    elif method == "sklearn":
        from sklearn.linear_model import Ridge
        from sklearn.metrics import r2_score
        from sklearn.model_selection import KFold

        scores = np.zeros((args.folds, len(alphas), y.shape[1]))
        for f, (tr, te) in enumerate(KFold(args.folds).split(x)):
            for a, alpha in enumerate(alphas):
                pred = Ridge(alpha=alpha).fit(x[tr], y[tr]).predict(x[te])
                scores[f, a] = r2_score(y[te], pred, multioutput="raw_values")
        mean = scores.mean(0) + 1e-10 * np.log(alphas)[:, None]
        idx = mean.argmax(0)
        best, r2 = alphas[idx], scores.mean(0)[idx, np.arange(y.shape[1])]
        # the refit on all data with each target's alpha (one fit per distinct alpha)
        for a in np.unique(idx):
            Ridge(alpha=alphas[a]).fit(x, y[:, idx == a])
    else:
        raise SystemExit(f"unknown method {method!r}; expected one of {METHODS}")
    seconds = time.perf_counter() - t0
    np.savez(OUT / f"bench_encoding-{args.tag}-{method}.npz", best=best, r2=r2)
    return {"method": method, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="stimuli")
    ap.add_argument("--p", type=int, default=1536, help="features")
    ap.add_argument("--targets", type=int, default=10000)
    ap.add_argument("--alphas", type=int, default=10)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--device", default=None, help="device of neuronatlas (cpu, cuda)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tag", default=str(os.getpid()), help=argparse.SUPPRESS)
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    if args.child:
        print(json.dumps(run_method(args.child, args)))
        return

    flags = ["--n", str(args.n), "--p", str(args.p), "--targets", str(args.targets),
             "--alphas", str(args.alphas), "--folds", str(args.folds), "--tag", args.tag]  # fmt: skip
    if args.device:
        flags += ["--device", args.device]
    methods = ["neuronatlas", *[m for m in args.methods if m != "neuronatlas"]]
    results = {}
    for m in methods:
        results[m] = run_child(Path(__file__), [*flags, "--child", m])
        print(f"{m}: {results[m]['seconds']:.2f} s", file=sys.stderr)
    ref = np.load(OUT / f"bench_encoding-{args.tag}-neuronatlas.npz")
    rows = []
    base = results["neuronatlas"]["seconds"]
    for m in methods:
        got = np.load(OUT / f"bench_encoding-{args.tag}-{m}.npz")
        same = float(np.mean(np.isclose(got["best"], ref["best"], rtol=1e-6)))
        diff = float(np.max(np.abs(got["r2"] - ref["r2"])))
        r = results[m]
        rows.append([m, f"{r['seconds']:.2f}", f"{r['seconds'] / base:.2f}×",
                     f"{r['peak_rss_mb']:,.0f}", f"{same:.4f}", f"{diff:.1e}"])  # fmt: skip
    print(f"\nRidge, {args.folds}-fold CV over {args.alphas} alphas, {args.n:,} × {args.p:,} "
          f"features → {args.targets:,} targets ({machine()})\n")  # fmt: skip
    print(markdown_table(
        ["method", "seconds", "time / neuronatlas", "peak RSS MiB", "same alpha",
         "max abs ΔR² vs neuronatlas"], rows))  # fmt: skip
    (OUT / "bench_encoding.json").write_text(json.dumps({"args": vars(args), "results": results}))
    for m in methods:
        (OUT / f"bench_encoding-{args.tag}-{m}.npz").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
