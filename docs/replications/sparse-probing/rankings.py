"""The unit rankings of "Finding Neurons in a Haystack" compared: mean difference, L1, OMP.

Same rows, split and probes as run.py (label ``keyword_in_code``), for two sites; only the
ranking that picks the top-k neurons changes.

    .venv/bin/python docs/replications/sparse-probing/rankings.py atlases/minilm-store

Writes ``rankings.csv`` and ``rankings.md`` beside itself.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from neuronatlas.concepts import sparse_probe_atlas

HERE = Path(__file__).parent
SITES = ["encoder.layer.0", "encoder.layer.3.output.dense:input"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("atlas", type=Path)
    ap.add_argument("--label", default="keyword_in_code")
    args = ap.parse_args()
    parts = []
    for method in ("mean_diff", "l1", "omp"):
        t = time.perf_counter()
        curve, _ = sparse_probe_atlas(
            args.atlas, args.label, sites=SITES, method=method, save=False
        )
        print(f"{method}: {time.perf_counter() - t:.0f} s")
        parts.append(curve.drop(columns="units").assign(ranking=method))
    table = pd.concat(parts, ignore_index=True)
    table["site"] = pd.Categorical(table["site"], SITES, ordered=True)
    table = table.sort_values(["site"], kind="stable")
    table.to_csv(HERE / "rankings.csv", index=False)
    lines = [f"Test F1 vs k for `{args.label}` by ranking method:", ""]
    ks = sorted(table["k"].unique())
    lines.append("| site | ranking | " + " | ".join(f"k={k}" for k in ks) + " |")
    lines.append("|---" * (len(ks) + 2) + "|")
    for (site, method), g in table.groupby(["site", "ranking"], sort=False, observed=True):
        vals = g.set_index("k")["f1"]
        lines.append(f"| {site} | {method} | " + " | ".join(f"{vals[k]:.3f}" for k in ks) + " |")
    (HERE / "rankings.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
