"""Shared pieces of the benchmark scripts: model + batches, timing, memory, tables."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

OUT = Path(__file__).parent / "out"


def minilm_batches(max_tokens: int, *, window: int = 256, batch_size: int = 32):
    """The packaged MiniLM and ``max_tokens`` tokens of Python's docs, batched once."""
    from neuronatlas.data import python_docs_corpus, text_batches
    from neuronatlas.models import load_model

    loaded = load_model("minilm")
    batches = list(
        text_batches(
            python_docs_corpus(), loaded.tokenizer, window=window, batch_size=batch_size,
            max_tokens=max_tokens,
        )
    )  # fmt: skip
    return loaded, batches


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def run_child(script: Path, args: list[str]) -> dict:
    """Run ``script`` with ``args`` in a fresh interpreter; it prints one JSON line last."""
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    import platform

    import torch

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )
