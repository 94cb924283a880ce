"""Universal units between two tiny GPT-2 language models trained from two seeds.

Follows "Universal Neurons in GPT2 Language Models" (Gurnee et al., 2024) at toy scale: two
2-layer GPT-2 models (same architecture, different initialization and data order) are trained
briefly (400 steps) on the documentation that ships with Python (``neuronatlas.data``), with the
packaged MiniLM tokenizer restricted to its 2047 most frequent tokens. Then, on held-out
windows, ``unit_correlations`` gives each MLP neuron's best match in the other model and the
rotated-basis baseline; neurons whose excess correlation exceeds 0.5 are universal.
``survey_units``, ``label_units`` and ``vocab_projection`` describe the best-matched ones. The
same measurement on two ReLU MLPs trained on sklearn's digits is a cross-check.

Writes ``universal-units.png`` and ``universal-units.json`` next to this file and prints the
tables used in ``universal-units.md``.

    .venv/bin/python docs/replications/universal_units.py     # ~1 min on 2 idle cores
    .venv/bin/python docs/replications/universal_units.py --cache /tmp/uu   # keep the weights
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neuronatlas.units import label_units, survey_units, unit_correlations, vocab_projection

HERE = Path(__file__).parent
VOCAB = 2048  # 0 = every other token
WINDOW = 64
TRAIN_TOKENS = 400_000
HELD_OUT = 1024  # windows (many documents are shorter than a window)
STEPS = 400
BATCH = 32
SEEDS = (1, 2)


class Remapped:
    """The MiniLM tokenizer's strings for the reduced vocabulary (id 0 = any other token)."""

    def __init__(self, tokenizer, keep: list[int]):
        self.names = ["<other>", *tokenizer.convert_ids_to_tokens(keep)]

    def convert_ids_to_tokens(self, ids):
        return [self.names[i] for i in ids]


def windows() -> tuple[torch.Tensor, torch.Tensor, Remapped]:
    """``(ids, mask)`` of 64-token windows of Python's docs in the reduced vocabulary."""
    from neuronatlas.data import python_docs_corpus, text_batches
    from neuronatlas.models import load_model

    tok = load_model("minilm").tokenizer
    rows, masks = [], []
    for b in text_batches(python_docs_corpus(), tok, window=WINDOW, batch_size=256,
                          max_tokens=TRAIN_TOKENS + HELD_OUT * WINDOW):  # fmt: skip
        pad = WINDOW - b.mask.shape[1]
        rows.append(torch.nn.functional.pad(torch.where(b.mask, b.token_id, 0), (0, pad)))
        masks.append(torch.nn.functional.pad(b.mask, (0, pad)))
    ids, mask = torch.cat(rows), torch.cat(masks)
    counts = torch.bincount(ids[mask], minlength=len(tok))
    keep = torch.argsort(counts, descending=True)[: VOCAB - 1]
    remap = torch.zeros(len(tok), dtype=torch.int64)
    remap[keep] = torch.arange(1, VOCAB)
    return remap[ids] * mask, mask, Remapped(tok, keep.tolist())


def gpt2(seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=WINDOW, n_embd=96, n_layer=2, n_head=4,
                     n_inner=384, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=0, eos_token_id=0)  # fmt: skip
    return GPT2LMHeadModel(cfg)


def train(seed: int, ids: torch.Tensor, mask: torch.Tensor, steps: int):
    model = gpt2(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for step in range(steps):
        idx = torch.randint(0, len(ids), (BATCH,), generator=g)
        labels = torch.where(mask[idx], ids[idx], -100)
        loss = model(input_ids=ids[idx], attention_mask=mask[idx].long(), labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 100 == 0 or step == steps - 1:
            print(f"  seed {seed} step {step}: loss {np.mean(losses[-50:]):.3f}", flush=True)
    return model.eval(), float(np.mean(losses[-50:]))


def held_out_loss(model, ids, mask) -> float:
    """Mean next-token cross-entropy on the held-out windows (in chunks of 128 windows)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(ids), 128):
            x, m = ids[i : i + 128], mask[i : i + 128]
            n = int(m[:, 1:].sum())
            labels = torch.where(m, x, -100)
            total += float(model(input_ids=x, attention_mask=m.long(), labels=labels).loss) * n
            count += n
    return total / count


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (index included), floats with 3 decimals."""
    df = df.reset_index()
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + " --- |" * df.shape[1]]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def context(tokens: pd.DataFrame, doc: int, pos: int, before: int = 8, after: int = 2) -> str:
    t = tokens[(tokens.doc == doc) & tokens.pos.between(pos - before, pos + after)]
    return " ".join(f"[{s}]" if p == pos else s for p, s in zip(t.pos, t.token, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=STEPS, help="training steps per model")
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder to keep the trained weights in (reused when present)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    started = time.perf_counter()
    ids, mask, names = windows()
    train_ids, train_mask = ids[:-HELD_OUT], mask[:-HELD_OUT]
    test_ids, test_mask = ids[-HELD_OUT:], mask[-HELD_OUT:]
    print(f"{int(train_mask.sum())} training tokens, {int(test_mask.sum())} held-out tokens")
    models, losses = [], []
    for seed in SEEDS:
        path = args.cache / f"gpt2-seed{seed}-{args.steps}.pt" if args.cache else None
        if path is not None and path.exists():
            model = gpt2(seed)
            model.load_state_dict(torch.load(path, weights_only=True))
            model.eval()
        else:
            model, _ = train(seed, train_ids, train_mask, args.steps)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), path)
        models.append(model)
        losses.append(held_out_loss(model, test_ids, test_mask))
    train_s = time.perf_counter() - started
    batches = [{"input_ids": test_ids[i : i + 32], "attention_mask": test_mask[i : i + 32].long()}
               for i in range(0, HELD_OUT, 32)]  # fmt: skip
    t = time.perf_counter()
    res = unit_correlations(models[0], models[1], batches, "mlp", "mlp")
    corr_s = time.perf_counter() - t
    survey = survey_units(models[0], batches, sites="mlp", tokenizer=names, top_k=10, context=8,
                          taxonomy_options={"max_pos": WINDOW, "massive_min_abs": 20.0})  # fmt: skip
    units = survey.units.merge(
        res.a[["site", "unit", "max_corr", "match_unit", "baseline_corr", "universal_excess"]],
        on=["site", "unit"],
    )
    units, info = label_units(units)
    vocab = pd.concat([vocab_projection(models[0], s, names, k=6) for s in units.site.unique()])
    units = units.merge(vocab, on=["site", "unit"])

    layer = units.groupby("layer").agg(
        units=("unit", "size"), universal=("label_universal", "mean"),
        max_corr=("max_corr", "median"), baseline=("baseline_corr", "median"),
    )  # fmt: skip
    labels = [c for c in units.columns if c.startswith("label_") and c != "label_universal"]
    by_kind = units.groupby("label_universal")[
        ["frac_active", "kurtosis", "tok_f1", "pos_eta2", *labels]
    ].mean()
    sweep = {t: float((units.universal_excess > t).mean()) for t in (0.1, 0.2, 0.3, 0.4, 0.5)}
    digits_table = digits_universality()
    summary = {
        "train_tokens": int(train_mask.sum()), "held_out_tokens": int(test_mask.sum()),
        "steps": args.steps, "batch": BATCH, "held_out_loss": losses, "train_s": round(train_s, 1),
        "correlation_s": round(corr_s, 1), "n_tokens": res.n_tokens,
        "fraction_universal": float(units.label_universal.mean()),
        "fraction_universal_b": float(res.b.label_universal.mean()),
        "per_layer": layer.reset_index().to_dict("records"),
        "universal_vs_not": by_kind.reset_index().to_dict("records"),
        "fraction_above_excess": sweep,
        "digits_mlp": digits_table.reset_index().to_dict("records"),
        "thresholds": info["thresholds"],
    }  # fmt: skip
    (HERE / "universal-units.json").write_text(json.dumps(summary, indent=1, default=float))
    plot(units)

    print(f"\nheld-out loss {losses}, training {train_s:.0f} s, correlations {corr_s:.1f} s")
    print(f"universal: {100 * summary['fraction_universal']:.1f}% of model A's "
          f"{len(units)} neurons, {100 * summary['fraction_universal_b']:.1f}% of B's\n")  # fmt: skip
    print(markdown(layer), "\n")
    print(markdown(by_kind.T.astype(float)), "\n")
    print("fraction of model A's neurons with excess correlation above t:", sweep, "\n")
    print("digits MLPs (3 x 256 ReLU, seeds 1 and 2, all 1797 digits):\n")
    print(markdown(digits_table), "\n")
    top = units.sort_values("universal_excess", ascending=False).head(6)
    for r in top.itertuples():
        kinds = [c[6:] for c in labels if getattr(r, c)] or ["-"]
        print(f"#### layer {r.layer}, neuron {r.unit} (match: neuron {r.match_unit} of B)\n")
        print(f"max corr {r.max_corr:.3f}, baseline {r.baseline_corr:.3f}, excess "
              f"{r.universal_excess:.3f}; labels: {', '.join(kinds)}; frac_active "
              f"{r.frac_active:.3f}; best token {r.tok!r} (id {r.tok_id}, F1 {r.tok_f1:.2f}); "
              f"promotes {r.vocab_top[:4]}\n")  # fmt: skip
        ex = survey.exemplars[(survey.exemplars.site == r.site) & (survey.exemplars.unit == r.unit)]
        for e in ex.head(4).itertuples():
            print(f"- {e.activation:.2f}: `{context(survey.tokens, e.doc, e.pos)}`")
        print()
    print(f"total {time.perf_counter() - started:.0f} s")


def digits_universality() -> pd.DataFrame:
    """The same measurement for two ReLU MLPs (3 x 256) trained on sklearn's digits."""
    import sys

    sys.path.insert(0, str(HERE))
    import lazy_neurons as ln

    x_tr, y_tr, x_te, _ = ln.digits()
    models = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        model = ln.mlp(256, 3).eval()
        ln.SEED = seed  # the order of the training batches
        ln.train(model, x_tr, y_tr)
        models.append(model)
    x = torch.cat([x_tr, x_te])
    sites = "act0,act1,act2"
    res = unit_correlations(models[0], models[1], list(x.split(256)), sites, sites)
    return res.a.groupby("site").agg(
        units=("unit", "size"), universal=("label_universal", "mean"),
        max_corr=("max_corr", "median"), baseline=("baseline_corr", "median"),
        max_excess=("universal_excess", "max"),
    )  # fmt: skip


def plot(units: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = sorted(units.layer.unique())
    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 4.3), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        u = units[units.layer == layer]
        uni = u.label_universal.to_numpy()
        ax.scatter(u.baseline_corr[~uni], u.max_corr[~uni], s=6, alpha=0.4, label="other")
        ax.scatter(u.baseline_corr[uni], u.max_corr[uni], s=10, color="C3", label="universal")
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
        ax.plot([0, 0.5], [0.5, 1.0], ls=":", c="C3", lw=1, label="excess = 0.5")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="max corr, rotated baseline",
               ylabel="max corr with model B", title=f"layer {layer} MLP neurons")  # fmt: skip
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(HERE / "universal-units.png", dpi=110)


if __name__ == "__main__":
    main()
