"""The whole default map (`neuronatlas map`) as a ratio to the bare forward pass, and its memory.

In one process: the bare MiniLM forward pass over exactly the batches the map uses (tokenized
beforehand, not timed), then `build_atlas` with every accumulator and top-20 exemplars with 10
tokens of context (tokenizing, recording, statistics, tables), then the bare pass again; the
ratio is the map's wall time over the median bare pass. Memory: peak RSS of the map alone, in
fresh processes, at 50k and 500k tokens (the corpus is Python's docs, repeated when needed).

Run:  .venv/bin/python benchmarks/bench_map.py [--tokens 100000] [--memory 50000,500000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import OUT, machine, markdown_table, median, peak_rss_mb, run_child, timed


def corpus(repeat: int):
    from neuronatlas.data import Document, load_corpus, python_docs_corpus

    docs = list(python_docs_corpus())
    return load_corpus([Document(f"{d.source}#{r}", d.text) for r in range(repeat) for d in docs])


def time_child(tokens: int) -> dict:
    from neuronatlas import build_atlas
    from neuronatlas.data import text_batches
    from neuronatlas.models import load_model

    loaded = load_model("minilm")
    docs = corpus(1 + tokens // 400_000)
    batches = list(
        text_batches(docs, loaded.tokenizer, window=256, batch_size=32, max_tokens=tokens)
    )

    def bare():
        with torch.inference_mode():
            for b in batches:
                loaded.model(**b.kwargs)

    bare()  # warm up
    bare_t = [timed(bare)]
    tmp = Path(tempfile.mkdtemp())
    map_t = []
    for rep in range(2):
        out = tmp / f"atlas{rep}"
        map_t.append(timed(lambda out=out: build_atlas(loaded, docs, out=out, max_tokens=tokens)))
        bare_t.append(timed(bare))
    manifest = json.loads((tmp / "atlas0" / "atlas.json").read_text())
    shutil.rmtree(tmp)
    return {
        "tokens": manifest["corpus"]["n_tokens"],
        "bare_s": bare_t,
        "map_s": map_t,
        "ratio": median(map_t) / median(bare_t),
        "timings": manifest["timings"],
    }


def memory_child(tokens: int) -> dict:
    from neuronatlas import build_atlas
    from neuronatlas.models import load_model

    loaded = load_model("minilm")
    docs = corpus(1 + tokens // 400_000)
    rss_model = peak_rss_mb()
    tmp = Path(tempfile.mkdtemp())
    t = timed(lambda: build_atlas(loaded, docs, out=tmp / "atlas", max_tokens=tokens))
    rss = peak_rss_mb()
    n = json.loads((tmp / "atlas" / "atlas.json").read_text())["corpus"]["n_tokens"]
    shutil.rmtree(tmp)
    return {"tokens": n, "seconds": t, "rss_peak_mb": rss, "rss_after_load_mb": rss_model}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--memory", default="50000,500000")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "time":
        print(json.dumps(time_child(args.tokens)))
        return
    if args.child == "memory":
        print(json.dumps(memory_child(args.tokens)))
        return
    me = Path(__file__)
    print("timing the map …", file=sys.stderr, flush=True)
    t = run_child(me, ["--child", "time", "--tokens", str(args.tokens)])
    mem = []
    for n in [int(x) for x in args.memory.split(",") if x]:
        print(f"memory at {n:,} tokens …", file=sys.stderr, flush=True)
        mem.append(run_child(me, ["--child", "memory", "--tokens", str(n)]))
    print(
        f"MiniLM, all 6 MLP sites (9,216 units), every accumulator, top-20 + context; {machine()}\n"
    )
    print(
        markdown_table(
            ["tokens", "bare forward (median)", "neuronatlas map (median of 2)", "ratio"],
            [
                [
                    f"{t['tokens']:,}",
                    f"{median(t['bare_s']):.1f} s",
                    f"{median(t['map_s']):.1f} s",
                    f"{t['ratio']:.3f}×",
                ]
            ],
        )
    )
    if mem:
        print()
        rows = [
            [
                f"{m['tokens']:,}",
                f"{m['seconds']:.1f} s",
                f"{m['rss_after_load_mb']:.0f} MiB",
                f"{m['rss_peak_mb']:.0f} MiB",
                f"{m['rss_peak_mb'] / mem[0]['rss_peak_mb']:.3f}×",
            ]
            for m in mem
        ]
        print(
            markdown_table(
                ["tokens", "map time", "RSS after model load", "peak RSS", "peak / first"], rows
            )
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_map.json").write_text(json.dumps({"time": t, "memory": mem}, indent=2))


if __name__ == "__main__":
    main()
