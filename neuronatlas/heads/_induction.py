"""The induction experiment: watch induction heads form, then test them causally.

A 2-layer attention-only transformer (:class:`~neuronatlas.heads.AttnOnlyTransformer`) is
trained on sequences of uniformly random tokens in which one random segment appears twice, the
second time at a random offset after the first. The only tokens that can be predicted better
than chance are those of the second copy (after its first token), and only by looking up what
followed the current token earlier: an induction mechanism. A 1-layer model trained the same way
is the control: an induction head needs a previous-token head in an earlier layer ("In-context
Learning and Induction Heads", Olsson et al., 2022; the data set-up follows "What needs to go
right for an induction head?", Singh et al., 2024, which studies the same formation on
synthetic repeated sequences).

At every checkpoint the log keeps the training loss, the loss and accuracy on a fixed
evaluation set (all positions, and the *in-context* positions of the second copy), and every
head's previous-token, duplicate-token and induction scores (the definitions of
:func:`~neuronatlas.heads.score_heads`), measured on 128 fixed sequences of the task itself, so
that a head attending at a fixed distance, which a fixed-length repeat would reward, gets little
credit. The **phase change** is the first checkpoint at which some head's induction
score reaches 0.5. After training, the heads whose induction score is at least 0.5 are
mean-ablated and the in-context accuracy measured again, next to ablating the other heads.

Results are cached in ``out`` under a key of the settings, so a second run with the same
settings only reads them back.

Examples:
    >>> cfg = InductionConfig(steps=20, eval_every=10, batch=8)
    >>> cfg.key()[:8] == InductionConfig(steps=20, eval_every=10, batch=8).key()[:8]
    True
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neuronatlas.heads import _patterns
from neuronatlas.heads._ablate import ablate_heads, head_means
from neuronatlas.heads._arch import HeadsError, find_heads
from neuronatlas.heads._score import _record
from neuronatlas.heads._toy import AttnOnlyTransformer

__all__ = ["InductionConfig", "InductionResult", "make_sequences", "run_induction"]

_VERSION = 2  # bump when the experiment changes, so old caches are not reused


@dataclass(frozen=True)
class InductionConfig:
    """Settings of the induction experiment (all of them go into the cache key).

    Attributes:
        vocab, n_ctx: vocabulary size and sequence length.
        seg_min, seg_max: length range of the repeated segment.
        d_model, n_heads, d_head: model width, heads per layer and head width.
        layers: the models trained (2 = the experiment, 1 = the control).
        steps, batch, lr, weight_decay: training (AdamW); seed: model and data seed.
        eval_every: steps between checkpoints; n_eval: evaluation sequences.
        threshold: induction score that marks an induction head (and the phase change).
    """

    vocab: int = 64
    n_ctx: int = 32
    seg_min: int = 8
    seg_max: int = 16
    d_model: int = 64
    n_heads: int = 4
    d_head: int = 16
    layers: tuple[int, ...] = (2, 1)
    steps: int = 1500
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    eval_every: int = 50
    n_eval: int = 512
    threshold: float = 0.5
    seed: int = 0

    def key(self) -> str:
        """A short hash of the settings (and the experiment version)."""
        blob = json.dumps({"v": _VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_sequences(cfg: InductionConfig, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` sequences with a repeated random segment.

    Returns:
        ``ids (n, n_ctx)`` and ``in_context (n, n_ctx)``: True at positions ``i`` whose *next*
        token is a token of the second copy after its first one (predictable by induction).
    """
    ids = torch.randint(cfg.vocab, (n, cfg.n_ctx), generator=gen)
    mask = torch.zeros(n, cfg.n_ctx, dtype=torch.bool)
    lens = torch.randint(cfg.seg_min, cfg.seg_max + 1, (n,), generator=gen)
    for i in range(n):
        s = int(lens[i])
        a = int(torch.randint(0, cfg.n_ctx - 2 * s + 1, (1,), generator=gen))
        c = int(torch.randint(a + s, cfg.n_ctx - s + 1, (1,), generator=gen))
        ids[i, c : c + s] = ids[i, a : a + s]
        mask[i, c : c + s - 1] = True
    return ids, mask


@dataclass
class InductionResult:
    """What :func:`run_induction` returns (and caches).

    Attributes:
        config: the settings; folder: where the results are.
        log: DataFrame, one row per (model, checkpoint): ``n_layers, step, train_loss,
            eval_loss, ic_loss, ic_acc`` and per head ``L{layer}H{head}_{score}``.
        summary: phase-change step, final figures and the ablation table per model.
    """

    config: InductionConfig
    folder: Path
    log: Any
    summary: dict[str, Any]


def _evaluate(model: AttnOnlyTransformer, ids: Tensor, ic: Tensor) -> dict[str, float]:
    with torch.no_grad():
        logits = model(ids)[:, :-1]
        tgt = ids[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt, reduction="none")
        m = ic[:, :-1]
        acc = (logits.argmax(-1) == tgt).float()
    return {
        "eval_loss": float(loss.mean()),
        "ic_loss": float(loss[m].mean()),
        "ic_acc": float(acc[m].mean()),
    }


def _head_scores(model: AttnOnlyTransformer, score_ids: Tensor) -> dict[str, float]:
    """Previous-token, duplicate-token and induction score of every head, measured on
    sequences of the task (a repeated segment at a varying offset), so that a head attending
    at a fixed distance gets no credit."""
    blocks = find_heads(model)
    content = torch.ones_like(score_ids, dtype=torch.bool)
    sums: dict[tuple[int, str], tuple[Tensor, Tensor]] = {}
    for sl, attn in _record(model, blocks, score_ids, content, 64):
        for layer, a in attn.items():
            for name, fn in (("previous_token", _patterns.previous_token),
                             ("duplicate_token", _patterns.duplicate_token),
                             ("induction", _patterns.induction)):  # fmt: skip
                s, c = fn(a, score_ids[sl], content[sl])
                old = sums.get((layer, name))
                sums[(layer, name)] = (s, c) if old is None else (old[0] + s, old[1] + c)
    out = {}
    for (layer, name), (s, c) in sums.items():
        for h in range(s.shape[0]):
            out[f"L{layer}H{h}_{name}"] = float(s[h] / c[h]) if c[h] > 0 else float("nan")
    return out


def _train(
    cfg: InductionConfig,
    n_layers: int,
    eval_set: tuple[Tensor, Tensor],
    progress: Callable[[str], None] | None,
) -> tuple[AttnOnlyTransformer, list[dict[str, float]]]:
    torch.manual_seed(cfg.seed)
    model = AttnOnlyTransformer(
        vocab=cfg.vocab, d_model=cfg.d_model, n_layers=n_layers, n_heads=cfg.n_heads,
        d_head=cfg.d_head, n_ctx=cfg.n_ctx,
    )  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 100)
    score_ids, _ = make_sequences(cfg, 128, torch.Generator().manual_seed(cfg.seed + 3))
    log: list[dict[str, float]] = []
    running, seen = 0.0, 0
    t0 = time.perf_counter()
    for step in range(cfg.steps + 1):
        if step % cfg.eval_every == 0 or step == cfg.steps:
            model.eval()
            row = {"n_layers": n_layers, "step": step,
                   "train_loss": running / seen if seen else float("nan")}  # fmt: skip
            row.update(_evaluate(model, *eval_set))
            row.update(_head_scores(model, score_ids))
            log.append(row)
            running, seen = 0.0, 0
            if progress is not None:
                best = max(v for k, v in row.items() if k.endswith("_induction"))
                progress(
                    f"{n_layers}-layer step {step}/{cfg.steps}: in-context loss "
                    f"{row['ic_loss']:.3f}, acc {row['ic_acc']:.3f}, max induction {best:.2f} "
                    f"({time.perf_counter() - t0:.0f} s)"
                )
            model.train()
        if step == cfg.steps:
            break
        ids, _ = make_sequences(cfg, cfg.batch, gen)
        logits = model(ids)[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += float(loss.detach())
        seen += 1
    model.eval()
    return model, log


def _ablations(
    model: AttnOnlyTransformer, cfg: InductionConfig, scores: dict[str, float],
    eval_set: tuple[Tensor, Tensor],
) -> list[dict[str, Any]]:  # fmt: skip
    ids, ic = eval_set
    n_layers = len(model.blocks)
    all_heads = [(layer, h) for layer in range(n_layers) for h in range(cfg.n_heads)]
    ind = [(la, h) for la, h in all_heads if scores[f"L{la}H{h}_induction"] >= cfg.threshold]
    prev = [
        (la, h)
        for la, h in all_heads
        if scores[f"L{la}H{h}_previous_token"] >= cfg.threshold and (la, h) not in ind
    ]
    groups = {
        "none": [],
        "induction heads": ind,
        "previous-token heads": prev,
        "all other heads": [x for x in all_heads if x not in ind and x not in prev],
        "other heads of the induction heads' layers": [
            x for x in all_heads if x not in ind and x[0] in {la for la, _ in ind}
        ],
    }
    means = head_means(model, lambda: model(ids))
    rows = []
    for name, heads in groups.items():
        if name != "none" and not heads:
            continue
        spec: dict[int, list[int]] = {}
        for la, h in heads:
            spec.setdefault(la, []).append(h)
        with ablate_heads(model, spec, method="mean", reference=means):
            res = _evaluate(model, ids, ic)
        rows.append({"ablated": name, "heads": [f"L{la}H{h}" for la, h in heads], **res})
    return rows


def _phase_change(log: list[dict[str, float]], threshold: float) -> int | None:
    for row in log:
        if max(v for k, v in row.items() if k.endswith("_induction")) >= threshold:
            return int(row["step"])
    return None


def run_induction(
    config: InductionConfig | None = None,
    out: str | Path | None = None,
    *,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> InductionResult:
    """Run (or read back) the induction experiment.

    Args:
        config: settings (default :class:`InductionConfig`).
        out: folder of the results; they go to ``out/<settings key>/``. Default
            ``~/.cache/neuronatlas/induction``.
        force: retrain even when results for these settings exist.
        progress: called with a line of text at each checkpoint.

    Returns:
        An :class:`InductionResult`; the folder holds ``log.parquet``, ``summary.json``,
        ``model-<n>l.pt`` and the figures ``loss.png`` and ``induction_score.png``.
    """
    import pandas as pd

    cfg = config or InductionConfig()
    if cfg.seg_min < 2 or 2 * cfg.seg_max > cfg.n_ctx or cfg.seg_min > cfg.seg_max:
        raise HeadsError(
            f"Segments of {cfg.seg_min}..{cfg.seg_max} tokens must appear twice in {cfg.n_ctx} "
            "positions: need 2 <= seg_min <= seg_max <= n_ctx / 2."
        )
    root = Path(out) if out is not None else Path.home() / ".cache" / "neuronatlas" / "induction"
    folder = root / cfg.key()
    done = folder / "summary.json"
    if done.exists() and not force:
        summary = json.loads(done.read_text())
        return InductionResult(cfg, folder, pd.read_parquet(folder / "log.parquet"), summary)
    folder.mkdir(parents=True, exist_ok=True)
    eval_set = make_sequences(cfg, cfg.n_eval, torch.Generator().manual_seed(cfg.seed + 7))
    logs: list[dict[str, float]] = []
    summary: dict[str, Any] = {"config": asdict(cfg), "chance_acc": 1.0 / cfg.vocab, "models": {}}
    for n_layers in cfg.layers:
        t0 = time.perf_counter()
        model, log = _train(cfg, n_layers, eval_set, progress)
        torch.save(model.state_dict(), folder / f"model-{n_layers}l.pt")
        final = log[-1]
        summary["models"][str(n_layers)] = {
            "phase_change_step": _phase_change(log, cfg.threshold),
            "final": {k: final[k] for k in ("eval_loss", "ic_loss", "ic_acc")},
            "max_induction": max(v for k, v in final.items() if k.endswith("_induction")),
            "ablations": _ablations(model, cfg, final, eval_set),
            "train_seconds": round(time.perf_counter() - t0, 1),
        }
        logs.extend(log)
    df = pd.DataFrame(logs)
    df.to_parquet(folder / "log.parquet", index=False)
    plot_induction(df, summary, folder)
    done.write_text(json.dumps(summary, indent=2))
    return InductionResult(cfg, folder, df, summary)


def plot_induction(log: Any, summary: dict[str, Any], folder: Path) -> list[Path]:
    """Write ``loss.png`` and ``induction_score.png`` (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {2: "tab:blue", 1: "tab:orange"}
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for n, part in log.groupby("n_layers"):
        c = colors.get(int(n), "gray")
        ax.plot(part["step"], part["eval_loss"], color=c, label=f"{n}-layer: all tokens")
        ax.plot(part["step"], part["ic_loss"], "--", color=c, label=f"{n}-layer: in-context tokens")
        pc = summary["models"][str(n)]["phase_change_step"]
        if pc is not None:
            ax.axvline(pc, color=c, lw=0.8, ls=":")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (nats)")
    ax.set_title("Evaluation loss (dotted line: phase change)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(folder / "loss.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, score, title in (
        (axes[0], "induction", "Induction score of every head"),
        (axes[1], "previous_token", "Previous-token score of every head"),
    ):
        for n, part in log.groupby("n_layers"):
            cols = [c for c in part.columns if c.endswith(f"_{score}") and part[c].notna().any()]
            for c in cols:
                style = "-" if int(n) == int(log["n_layers"].max()) else ":"
                ax.plot(part["step"], part[c], style, lw=1.2, label=f"{n}-layer {c.split('_')[0]}")
        ax.set_xlabel("training step")
        ax.set_title(title)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("score")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(folder / "induction_score.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
