"""Viewer latency on a 100k-unit atlas: unit-table queries and unit pages, p50 / p95.

    python benchmarks/bench_viewer.py [--atlas DIR] [--requests 100]

Writes a synthetic atlas of 66 sites x 1,536 units (101,376 units, 20 exemplars each with
21 context activations; kept in DIR when given, so later runs reuse it), serves it with
uvicorn on 127.0.0.1 and times requests over HTTP (keep-alive), after a warm-up:

- unit table: a random filter (site / label / range / search) + a sort on a random statistic
  + a random page, as the HTML page and as the JSON API;
- unit page: a random unit's page (statistics, histogram, 20 shaded exemplars).

The goal is p95 < 150 ms for both.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import urllib.parse
from pathlib import Path

import httpx

from neuronatlas.viewer import ViewerAtlas, serve_in_thread, write_synthetic_atlas

N_SITES, N_UNITS = 66, 1536
SORTS = ("kurtosis", "max", "frac_active", "std", "p99", "mean", "skew", "top_token")


def make_atlas(path: Path) -> Path:
    if (path / "atlas.json").exists():
        return path
    t0 = time.perf_counter()
    write_synthetic_atlas(
        path,
        n_layers=N_SITES,
        n_units=N_UNITS,
        n_docs=160,
        doc_len=128,
        top_k=20,
        context=10,
        seed=1,
    )
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")
    return path


def table_queries(sites: list[str], rng: random.Random, n: int) -> list[list[tuple[str, str]]]:
    out = []
    for _ in range(n):
        q: list[tuple[str, str]] = []
        kind = rng.randrange(5)
        if kind == 0:
            q.append(("site", rng.choice(sites)))
        elif kind == 1:
            q.append(("label", rng.choice(["label_token", "!label_dead", "label_positional"])))
        elif kind == 2:
            q.append(
                ("range", f"frac_active:{rng.uniform(0, 0.2):.3f}:{rng.uniform(0.3, 0.9):.3f}")
            )
        elif kind == 3:
            q.append(("q", rng.choice(["the", "layer.4", "func", "[CLS]", "7"])))
        else:
            q += [("site", rng.choice(sites)), ("range", f"kurtosis:{rng.uniform(0, 5):.2f}:")]
        q += [
            ("sort", rng.choice(SORTS)),
            ("order", rng.choice(["asc", "desc"])),
            ("page", str(rng.randint(1, 3))),
        ]
        out.append(q)
    return out


def timed(client: httpx.Client, urls: list[str]) -> list[float]:
    times = []
    for url in urls:
        t0 = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{url} -> {r.status_code}: {r.text[:300]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--atlas", type=Path, help="where to keep the synthetic atlas (reused when present)"
    )
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    atlas_dir = make_atlas(args.atlas or Path(tempfile.mkdtemp()) / "atlas-100k")
    t0 = time.perf_counter()
    atlas = ViewerAtlas(atlas_dir)
    open_ms = (time.perf_counter() - t0) * 1000
    rng = random.Random(0)
    sites = [s.name for s in atlas.sites]
    tables = [
        "/units?" + urllib.parse.urlencode(q) for q in table_queries(sites, rng, args.requests)
    ]
    apis = [
        "/api/units?" + urllib.parse.urlencode(q) for q in table_queries(sites, rng, args.requests)
    ]
    units = [
        f"/unit/{urllib.parse.quote(rng.choice(sites), safe='')}/{rng.randrange(N_UNITS)}"
        for _ in range(args.requests)
    ]
    with serve_in_thread(atlas) as base, httpx.Client(base_url=base, timeout=30) as client:
        timed(client, tables[:10] + units[:10] + ["/"])  # warm-up
        rows = [
            ("unit table, HTML (filter + sort + page)", timed(client, tables)),
            ("unit table, JSON API (filter + sort + page)", timed(client, apis)),
            ("unit page, HTML (20 shaded exemplars)", timed(client, units)),
            ("overview, HTML", timed(client, ["/"] * 10)),
        ]
    print(f"\natlas: {atlas.n_units:,} units in {len(sites)} sites; opened in {open_ms:.0f} ms\n")
    print(f"| {'request':<46} | {'n':>4} | {'p50 ms':>7} | {'p95 ms':>7} | {'max ms':>7} |")
    print(f"| {'-' * 46} | {'-' * 4} | {'-' * 7} | {'-' * 7} | {'-' * 7} |")
    for name, t in rows:
        q = statistics.quantiles(t, n=20, method="inclusive")
        print(
            f"| {name:<46} | {len(t):>4} | {statistics.median(t):>7.1f} | {q[18]:>7.1f} | {max(t):>7.1f} |"
        )


if __name__ == "__main__":
    main()
