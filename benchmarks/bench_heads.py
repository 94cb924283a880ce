"""Cost of scoring every attention head of MiniLM, as a ratio to the bare forward pass.

All variants see the same 10k tokens of Python's docs (window 256, batch 32), pre-tokenized.
Timings are interleaved (``--repeats`` rounds, median), in one process:

- ``bare forward``: the model as loaded (fused SDPA attention), no outputs kept;
- ``eager + output_attentions``: what any probability-based head analysis must at least run
  (the attention probabilities materialized and returned by Hugging Face);
- ``hand-written (output_attentions + torch)``: the same sink / dormant statistics a user would
  write on top of it, over the 10k tokens;
- ``neuronatlas sink scores``: :func:`score_heads` restricted to the corpus part
  (``texts=`` the 10k tokens) — recording, eager switch and restore included;
- ``neuronatlas all pattern scores``: the full :func:`score_heads` without weights: the corpus
  sink / dormant scores plus the previous-token, duplicate-token, induction (16 repeated random
  sequences) and retrieval (16 needle contexts) scores;
- ``neuronatlas weight scores``: the weight-only OV / QK scores (independent of the tokens).

Run:  .venv/bin/python benchmarks/bench_heads.py [--tokens 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, markdown_table, median, minilm_batches


def _texts(batches) -> list[list[int]]:
    out = []
    for b in batches:
        ids, mask = b.kwargs["input_ids"], b.mask
        for row, m in zip(ids, mask, strict=True):
            out.append(row[m].tolist())
    return out


def bare(model, batches) -> None:
    with torch.inference_mode():
        for b in batches:
            model(**b.kwargs)


def eager_attentions(model, batches) -> None:
    from neuronatlas.record import eager_attention

    with eager_attention(model), torch.inference_mode():
        for b in batches:
            model(**b.kwargs, output_attentions=True)


def hand_written(model, batches, special_ids) -> torch.Tensor:
    """Sink mass per (layer, head) with output_attentions, as a user would write it."""
    from neuronatlas.record import eager_attention

    special = torch.tensor(sorted(special_ids))
    sums = None
    n = 0
    with eager_attention(model), torch.inference_mode():
        for b in batches:
            out = model(**b.kwargs, output_attentions=True)
            valid = b.mask
            sink = torch.isin(b.kwargs["input_ids"], special) & valid
            sink[:, 0] = True
            q = valid.clone()
            q[:, 0] = False
            per = torch.stack(
                [(a * sink[:, None, None, :]).sum(-1) for a in out.attentions]
            )  # (layer, batch, head, q)
            mass = (per * q[None, :, None, :]).sum(-1) / q.sum(-1)[None, :, None]
            s = mass.sum(1)
            sums = s if sums is None else sums + s
            n += valid.shape[0]
    return sums / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from neuronatlas.heads import score_heads
    from neuronatlas.heads._arch import embedding_matrices, find_heads
    from neuronatlas.heads._circuits import ov_copying, ov_topk_copying, qk_same_token

    loaded, batches = minilm_batches(args.tokens)
    model, tok = loaded.model, loaded.tokenizer
    texts = _texts(batches)
    n_tokens = sum(len(t) for t in texts)
    special = set(tok.all_special_ids)

    def weights_only() -> None:
        w_e, w_u = embedding_matrices(model)
        sample = torch.randperm(w_e.shape[0], generator=torch.Generator().manual_seed(0))[:256]
        for b in find_heads(model):
            w = b.weights(model)
            ov_copying(w, w_e, w_u), qk_same_token(w, w_e), ov_topk_copying(w, w_e, w_u, sample)

    variants = {
        "bare forward": lambda: bare(model, batches),
        "eager + output_attentions": lambda: eager_attentions(model, batches),
        "hand-written sink scores (output_attentions + torch)": lambda: hand_written(
            model, batches, special
        ),
        "neuronatlas sink scores": lambda: score_heads(
            model, tok, texts=texts, weights=False, n_seq=1, batch_size=32
        ),
        "neuronatlas all pattern scores": lambda: score_heads(
            model, tok, texts=texts, weights=False, batch_size=32
        ),
        "neuronatlas weight scores": weights_only,
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in variants.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    base = median(times["bare forward"])
    rows = [[name, f"{median(ts):.2f}", f"{median(ts) / base:.2f}×"] for name, ts in times.items()]
    print(f"MiniLM, {n_tokens:,} tokens in {len(texts)} sequences; {machine()}\n")
    print(markdown_table(["variant", "median s", "ratio to bare forward"], rows))
    print(
        "\n`neuronatlas sink scores` still runs one repeated-random and one needle sequence "
        "(n_seq=1); `all pattern scores` adds 16 of each (~5.6k tokens)."
    )


if __name__ == "__main__":
    main()
