"""Induction heads forming, and tested causally: the built-in experiment, written up.

Runs ``neuronatlas experiment induction`` with its default settings (a 2-layer attention-only
transformer and a 1-layer control trained on random tokens that repeat a random segment at a
varying offset; see ``neuronatlas.heads._induction``), then copies the figures and the numbers
next to this file and prints the tables of ``README.md``:

    .venv/bin/python docs/replications/induction/induction.py [--seeds 0 1 2]

Results are cached under ``~/.cache/neuronatlas/induction/<settings key>/``: a second run only
reads them back (``--force`` retrains).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from neuronatlas.heads._induction import InductionConfig, plot_induction, run_induction

HERE = Path(__file__).parent


def patching_demo(folder: Path, cfg: InductionConfig) -> dict:
    """Activation patching and direct logit attribution on the trained 2-layer model.

    Clean: a sequence of the task. Corrupted: the same sequence with the first copy of the
    segment replaced by other random tokens (so the second copy cannot be looked up). Metric:
    the logit of the correct next token at the last in-context position (so that one patched
    position can restore it).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from neuronatlas.heads import AttnOnlyTransformer, direct_logit_attribution, patch_heads
    from neuronatlas.heads._induction import make_sequences

    model = AttnOnlyTransformer(
        vocab=cfg.vocab, d_model=cfg.d_model, n_layers=2, n_heads=cfg.n_heads,
        d_head=cfg.d_head, n_ctx=cfg.n_ctx,
    )  # fmt: skip
    model.load_state_dict(torch.load(folder / "model-2l.pt"))
    model.eval()
    gen = torch.Generator().manual_seed(123)
    clean, ic = make_sequences(cfg, 1, gen)
    q = ic[0].nonzero().squeeze(1)  # in-context positions
    n = len(q) + 1
    start2 = int(q[0])
    first = next(
        a for a in range(start2) if torch.equal(clean[0, a : a + n], clean[0, start2 : start2 + n])
    )
    corrupt = clean.clone()
    corrupt[0, first : first + n] = torch.randint(cfg.vocab, (n,), generator=gen)
    nxt = clean[0, q + 1]

    last, want = int(q[-1]), int(nxt[-1])

    def metric(logits):
        return float(logits[0, last, want])

    grid = patch_heads(model, lambda: model(clean), lambda: model(corrupt), metric)
    targets = torch.full_like(clean, -1)
    targets[0, q] = nxt
    dla = direct_logit_attribution(model, clean, targets)

    fig, axes = plt.subplots(2, 1, figsize=(9, 4.2), sharex=True)
    for layer, ax in enumerate(axes):
        part = grid[grid["layer"] == layer].pivot(index="head", columns="pos", values="effect")
        im = ax.imshow(part.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        ax.set_ylabel(f"layer {layer}\nhead")
        ax.set_yticks(range(cfg.n_heads))
        ax.axvspan(first - 0.5, first + n - 0.5, color="gold", alpha=0.15)
        ax.axvspan(start2 - 0.5, start2 + n - 0.5, color="green", alpha=0.12)
    axes[-1].set_xlabel("position (yellow: first copy, green: second copy)")
    fig.colorbar(im, ax=axes, label="patching effect (0 corrupted, 1 clean)")
    fig.suptitle("Activation patching, clean -> corrupted, per (layer, position, head)")
    fig.savefig(HERE / "patching.png", dpi=110)
    plt.close(fig)
    by_head = grid.groupby(["layer", "head"])["effect"].max()
    return {
        "clean_metric": grid.attrs["clean_metric"],
        "corrupted_metric": grid.attrs["corrupted_metric"],
        "max_effect_per_head": {f"L{la}H{h}": round(float(v), 3) for (la, h), v in by_head.items()},
        "dla_in_context": {f"L{r.layer}H{r.head}": round(r.dla, 3) for r in dla.itertuples()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    numbers = {}
    for seed in args.seeds:
        res = run_induction(InductionConfig(seed=seed), force=args.force, progress=print)
        numbers[str(seed)] = res.summary
        if seed == args.seeds[0]:
            plot_induction(res.log, res.summary, res.folder)
            for name in ("loss.png", "induction_score.png"):
                shutil.copy(res.folder / name, HERE / name)
    first = run_induction(InductionConfig(seed=args.seeds[0]))
    numbers["patching"] = patching_demo(first.folder, first.config)
    (HERE / "numbers.json").write_text(json.dumps(numbers, indent=2))

    print("\n| seed | model | phase change (step) | in-context accuracy | max induction score |")
    print("| --- | --- | ---: | ---: | ---: |")
    patching = numbers.pop("patching")
    for seed, s in numbers.items():
        for n, m in s["models"].items():
            pc = m["phase_change_step"]
            print(
                f"| {seed} | {n}-layer | {pc if pc is not None else 'none'} | "
                f"{m['final']['ic_acc']:.3f} | {m['max_induction']:.2f} |"
            )
    print("\n| seed | model | heads ablated (mean) | in-context accuracy | in-context loss |")
    print("| --- | --- | --- | ---: | ---: |")
    for seed, s in numbers.items():
        for n, m in s["models"].items():
            for row in m["ablations"]:
                heads = ", ".join(row["heads"]) or "—"
                print(
                    f"| {seed} | {n}-layer | {row['ablated']}: {heads} | {row['ic_acc']:.3f} | "
                    f"{row['ic_loss']:.3f} |"
                )
    print(f"\nchance accuracy: {1 / InductionConfig().vocab:.4f}")
    print("\npatching (max effect over positions) and DLA on in-context positions:")
    print("| head | max patching effect | direct logit attribution |")
    print("| --- | ---: | ---: |")
    for head, eff in patching["max_effect_per_head"].items():
        print(f"| {head} | {eff:.3f} | {patching['dla_in_context'][head]:.3f} |")
    print(
        f"clean metric {patching['clean_metric']:.3f}, corrupted {patching['corrupted_metric']:.3f}"
    )


if __name__ == "__main__":
    main()
