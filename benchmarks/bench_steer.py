"""Overhead of an active steering hook on generation, as a ratio to plain generation.

A GPT-2-shaped model built from its config (random weights, no download) generates greedily
from the same prompts with a KV cache. Variants, interleaved ``--repeats`` times in one process,
reported as the ratio of median (and of minimum) times to plain ``generate``:

- ``plain``: ``model.generate`` with no hook (the floor);
- ``hand hook``: what a user writes by hand — a forward hook adding the vector to the block's
  output tuple;
- ``intervene add(all)``: ``neuronatlas.intervene`` with ``add(v, coef)`` at every position;
- ``intervene add(generated)``: the same, only at generated positions (position tracking and a
  mask).

Run:  .venv/bin/python benchmarks/bench_steer.py [--layers 12 --d-model 768 --new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import OUT, machine, markdown_table, median, timed


def build(layers: int, d_model: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=layers, n_embd=d_model, n_head=max(1, d_model // 64), n_positions=1024)
    return GPT2LMHeadModel(cfg).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from neuronatlas.intervene import add, intervene

    model = build(args.layers, args.d_model)
    site = f"transformer.h.{args.layers // 2}"
    block = dict(model.named_modules())[site]
    v = torch.randn(args.d_model) * 0.1
    ids = torch.randint(
        0,
        model.config.vocab_size,
        (args.batch, args.prompt_len),
        generator=torch.Generator().manual_seed(0),
    )
    kw = dict(
        max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
        pad_token_id=0, attention_mask=torch.ones_like(ids),
    )  # fmt: skip

    def plain():
        with torch.inference_mode():
            model.generate(ids, **kw)

    def hand():
        def hook(mod, a, out):
            return (out[0] + v, *out[1:]) if isinstance(out, tuple) else out + v

        h = block.register_forward_hook(hook)
        try:
            plain()
        finally:
            h.remove()

    def na_all():
        with intervene(model, {site: add(v, 1.0)}):
            plain()

    def na_generated():
        with intervene(model, {site: add(v, 1.0, positions="generated")}):
            plain()

    variants = {"plain": plain, "hand hook": hand, "intervene add(all)": na_all,
                "intervene add(generated)": na_generated}  # fmt: skip
    plain()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            times[name].append(timed(fn))
    base = median(times["plain"])
    best = min(times["plain"])
    rows = [
        [name, f"{median(ts):.3f}", f"{median(ts) / base:.3f}", f"{min(ts) / best:.3f}"]
        for name, ts in times.items()
    ]
    print(f"\n{machine()}")
    print(
        f"GPT-2 shape: {args.layers} layers, d_model {args.d_model}; batch {args.batch}, prompt "
        f"{args.prompt_len}, {args.new_tokens} new tokens, KV cache; median of {args.repeats}\n"
    )
    header = ["variant", "median s", "ratio to plain (medians)", "ratio to plain (minima)"]
    print(markdown_table(header, rows))
    OUT.mkdir(exist_ok=True)
    result = {"args": vars(args), "times": times, "machine": machine()}
    (OUT / "bench_steer.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
