"""Score every attention head of a model: attention-pattern and weight-only scores, one table.

Examples:
    >>> from neuronatlas.heads import AttnOnlyTransformer, score_heads
    >>> model = AttnOnlyTransformer(vocab=64, d_model=16, n_layers=2, n_heads=2, d_head=8, n_ctx=40)
    >>> table = score_heads(model, n_seq=4)
    >>> list(table.columns[:4]), len(table)
    (['site', 'layer', 'head', 'previous_token'], 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from neuronatlas.heads import _circuits, _patterns
from neuronatlas.heads._arch import HeadBlock, HeadsError, embedding_matrices, find_heads

__all__ = ["PATTERN_SCORES", "WEIGHT_SCORES", "ScoreSettings", "score_heads"]

#: Attention-pattern scores and what they measure (definitions in ``_patterns``).
PATTERN_SCORES: dict[str, str] = {
    "previous_token": "mean attention from position i to i-1 (repeated random tokens)",
    "duplicate_token": "mean attention to earlier occurrences of the same token",
    "induction": "mean attention to the token after an earlier occurrence of the current token",
    "retrieval": "fraction of needle tokens copied from the max-attention position",
    "sink": "mean attention on the first position and special tokens",
    "dormant_frac": "fraction of sequences on which the sink mass is >= the threshold",
}
#: Weight-only scores (definitions in ``_circuits``).
WEIGHT_SCORES: dict[str, str] = {
    "copying": "sum(lambda)/sum(|lambda|) of the OV circuit W_E W_V W_O W_U",
    "copying_top10": "fraction of tokens whose own logit is in the top 10 of their OV row",
    "qk_same_token": "sum(lambda)/sum(|lambda|) of the QK circuit W_E W_Q W_K^T W_E^T",
}


@dataclass(frozen=True)
class ScoreSettings:
    """Settings of :func:`score_heads` (recorded with the results).

    Attributes:
        n_seq: sequences of repeated random tokens (and needle contexts) scored.
        seg_len: length of the random segment repeated twice (None: up to 64, to fit).
        needle_len, haystack_len: needle and haystack lengths of the retrieval contexts
            (haystack None: up to 200 tokens, to fit).
        sink_threshold: sink mass at or above which a head is dormant on a sequence.
        copy_tokens: tokens sampled for ``copying_top10``.
        batch_size: sequences per forward pass; seed: random seed of the token sequences.
    """

    n_seq: int = 16
    seg_len: int | None = None
    needle_len: int = 8
    haystack_len: int | None = None
    sink_threshold: float = 0.5
    copy_tokens: int = 256
    batch_size: int = 8
    seed: int = 0


def _max_len(model: nn.Module) -> int:
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    v = getattr(model, "n_ctx", None)
    return int(v) if isinstance(v, int) else 512


def _vocab_size(model: nn.Module, tokenizer: Any) -> int:
    cfg = getattr(model, "config", None)
    for v in (getattr(cfg, "vocab_size", None), getattr(tokenizer, "vocab_size", None)):
        if isinstance(v, int) and v > 0:
            return v
    get_in = getattr(model, "get_input_embeddings", None)
    emb = get_in() if callable(get_in) else None
    if emb is not None and hasattr(emb, "num_embeddings"):
        return int(emb.num_embeddings)
    raise HeadsError(
        f"Could not tell the vocabulary size of {type(model).__name__}: pass a tokenizer, or a "
        "model with config.vocab_size or get_input_embeddings()."
    )


def _specials(tokenizer: Any) -> tuple[list[int], list[int], set[int]]:
    """Special ids put before and after a text by the tokenizer, and all special ids."""
    if tokenizer is None:
        return [], [], set()
    empty = list(tokenizer("", add_special_tokens=True)["input_ids"])
    return empty[:1], empty[1:], set(getattr(tokenizer, "all_special_ids", []) or [])


def _call(model: nn.Module, ids: Tensor, mask: Tensor) -> None:
    if getattr(model, "config", None) is not None:
        model(input_ids=ids, attention_mask=mask.long())
    else:
        model(ids)


class _Sequences:
    """Random token sequences for the scores, with their bookkeeping."""

    def __init__(self, model: nn.Module, tokenizer: Any, s: ScoreSettings) -> None:
        self.prefix, self.suffix, self.special = _specials(tokenizer)
        vocab = _vocab_size(model, tokenizer)
        allowed = torch.ones(vocab, dtype=torch.bool)
        allowed[[i for i in self.special if i < vocab]] = False
        self.pool = allowed.nonzero().squeeze(1)
        self.gen = torch.Generator().manual_seed(s.seed)
        room = _max_len(model) - len(self.prefix) - len(self.suffix)
        self.seg = s.seg_len or min(64, room // 2)
        if self.seg < 2 or 2 * self.seg > room:
            raise HeadsError(
                f"A repeated segment of {self.seg} tokens does not fit {type(model).__name__}'s "
                f"{room + len(self.prefix) + len(self.suffix)} positions twice; pass a seg_len "
                f"between 2 and {room // 2}."
            )
        self.needle = s.needle_len
        self.hay = s.haystack_len or min(200, room - 2 * self.needle)
        if self.hay < 1 or self.needle < 2 or self.hay + 2 * self.needle > room:
            raise HeadsError(
                f"A needle of {self.needle} tokens twice plus a haystack of {self.hay} tokens "
                f"does not fit {room} positions; choose smaller needle_len / haystack_len."
            )

    def _rand(self, *shape: int) -> Tensor:
        return self.pool[torch.randint(len(self.pool), shape, generator=self.gen)]

    def _wrap(self, body: Tensor) -> tuple[Tensor, Tensor]:
        n = body.shape[0]
        pre = torch.tensor(self.prefix, dtype=torch.long).expand(n, -1)
        suf = torch.tensor(self.suffix, dtype=torch.long).expand(n, -1)
        ids = torch.cat([pre, body, suf], 1)
        content = torch.zeros_like(ids, dtype=torch.bool)
        content[:, len(self.prefix) : len(self.prefix) + body.shape[1]] = True
        return ids, content

    def repeated(self, n: int) -> tuple[Tensor, Tensor]:
        seg = self._rand(n, self.seg)
        return self._wrap(torch.cat([seg, seg], 1))

    def needles(self, n: int) -> tuple[Tensor, Tensor]:
        hay, needle = self._rand(n, self.hay), self._rand(n, self.needle)
        at = torch.randint(self.hay + 1, (n,), generator=self.gen)
        rows, targets = [], []
        p = len(self.prefix)
        for b in range(n):
            a = int(at[b])
            rows.append(torch.cat([hay[b, :a], needle[b], hay[b, a:], needle[b]]))
            t = torch.full((self.hay + 2 * self.needle,), -1, dtype=torch.long)
            start2 = self.hay + self.needle  # first token of the repeat, within the body
            for k in range(self.needle - 1):  # query start2 + k predicts needle[k + 1]
                t[start2 + k] = p + a + k + 1
            targets.append(t)
        ids, _ = self._wrap(torch.stack(rows))
        tgt = torch.full_like(ids, -1)
        tgt[:, p : p + self.hay + 2 * self.needle] = torch.stack(targets)
        return ids, tgt


def _record(model: nn.Module, blocks: list[HeadBlock], ids: Tensor, mask: Tensor, batch_size: int):
    """Yield ``(rows, {layer: attn})`` per batch, attention with non-finite values counted."""
    from neuronatlas.record import Recorder

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    sites = [b.attn_site for b in blocks]
    with Recorder(model, sites) as rec, torch.no_grad():
        for start in range(0, ids.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            _call(model, ids[sl].to(device), mask[sl].to(device))
            acts = rec.pop()
            yield sl, {b.layer: acts[b.attn_site].float().cpu() for b in blocks}


class _Sums:
    def __init__(self, blocks: list[HeadBlock]) -> None:
        self.parts = {b.layer: {} for b in blocks}
        self.nonfinite = {b.layer: torch.zeros(b.n_heads, dtype=torch.float64) for b in blocks}

    def add(self, layer: int, name: str, part: tuple[Tensor, Tensor]) -> None:
        old = self.parts[layer].get(name)
        self.parts[layer][name] = part if old is None else (old[0] + part[0], old[1] + part[1])

    def clean(self, layer: int, attn: Tensor) -> Tensor:
        bad = ~torch.isfinite(attn)
        if bad.any():
            self.nonfinite[layer] += bad.sum((0, 2, 3)).double()
            attn = attn.nan_to_num(0.0, 0.0, 0.0)
        return attn

    def score(self, layer: int, name: str) -> np.ndarray:
        s, c = self.parts[layer][name]
        return torch.where(c > 0, s / c.clamp_min(1), torch.nan).numpy()


def score_heads(
    model: nn.Module,
    tokenizer: Any = None,
    *,
    texts: Sequence[Sequence[int]] | None = None,
    weights: bool = True,
    settings: ScoreSettings | None = None,
    **overrides: Any,
):
    """Score every attention head of ``model``; one row per head.

    Args:
        model: a Hugging Face transformer (GPT-2, BERT/MiniLM, Llama-style, OPT, ViT) or an
            :class:`~neuronatlas.heads.AttnOnlyTransformer`; see ``_arch`` for the families.
        tokenizer: its tokenizer, for special tokens (``[CLS] ... [SEP]``, ``<s>``) put around
            the random sequences and counted as sinks; None: no special tokens.
        texts: token-id sequences of natural text (as the model reads them, special tokens
            included) for the sink and dormant scores; None: the repeated random sequences.
        weights: also compute the weight-only scores (``copying``, ``copying_top10``,
            ``qk_same_token``); needs the model's embeddings.
        settings: a :class:`ScoreSettings`; ``overrides`` replace its fields.

    Returns:
        A pandas DataFrame with columns ``site, layer, head`` and one per score (see
        :data:`PATTERN_SCORES`, :data:`WEIGHT_SCORES`), ``dormant`` (``dormant_frac >= 0.5``)
        and ``n_nonfinite`` (non-finite attention probabilities seen, counted and left out).

    Raises:
        HeadsError: the model has no attention block of a known family, or the sequences do
            not fit its positions.
    """
    import pandas as pd

    s = settings or ScoreSettings()
    if overrides:
        s = ScoreSettings(**{**asdict(s), **overrides})
    if s.n_seq < 1 or s.batch_size < 1:
        raise HeadsError(f"n_seq and batch_size must be >= 1; got {s.n_seq}, {s.batch_size}.")
    blocks = find_heads(model)
    seqs = _Sequences(model, tokenizer, s)
    sums = _Sums(blocks)
    if texts is not None:  # checked before any forward pass
        nat_ids, valid = _pad(texts, _max_len(model))
        vocab = _vocab_size(model, tokenizer)
        if int(nat_ids.max()) >= vocab or int(nat_ids.min()) < 0:
            raise HeadsError(
                f"texts hold token ids in [{int(nat_ids.min())}, {int(nat_ids.max())}], but "
                f"{type(model).__name__} has a vocabulary of {vocab}: the texts were tokenized "
                "for another model. Pass texts tokenized by this model's tokenizer, or "
                "texts=None (random sequences)."
            )

    ids, content = seqs.repeated(s.n_seq)
    full = torch.ones_like(ids, dtype=torch.bool)
    sink_from_repeats = texts is None
    per_seq: dict[int, list[Tensor]] = {b.layer: [] for b in blocks}
    for sl, attn in _record(model, blocks, ids, full, s.batch_size):
        for layer, a in attn.items():
            a = sums.clean(layer, a)
            for name, fn in (("previous_token", _patterns.previous_token),
                             ("duplicate_token", _patterns.duplicate_token),
                             ("induction", _patterns.induction)):  # fmt: skip
                sums.add(layer, name, fn(a, ids[sl], content[sl]))
            if sink_from_repeats:
                special = torch.isin(ids[sl], torch.tensor(sorted(seqs.special), dtype=torch.long))
                per_seq[layer].append(_patterns.sink_mass(a, special, full[sl]))

    ids, targets = seqs.needles(s.n_seq)
    for sl, attn in _record(
        model, blocks, ids, torch.ones_like(ids, dtype=torch.bool), s.batch_size
    ):
        for layer, a in attn.items():
            sums.add(layer, "retrieval", _patterns.retrieval(sums.clean(layer, a), targets[sl]))

    if not sink_from_repeats:
        special = torch.isin(nat_ids, torch.tensor(sorted(seqs.special), dtype=torch.long))
        for sl, attn in _record(model, blocks, nat_ids, valid, s.batch_size):
            for layer, a in attn.items():
                a = sums.clean(layer, a)
                per_seq[layer].append(_patterns.sink_mass(a, special[sl], valid[sl]))

    w_e = w_u = None
    if weights:
        w_e, w_u = embedding_matrices(model)
        gen = torch.Generator().manual_seed(s.seed)
        sample = seqs.pool[torch.randperm(len(seqs.pool), generator=gen)[: s.copy_tokens]]

    rows = []
    for b in blocks:
        sink = torch.cat(per_seq[b.layer], 0)  # (seq, head)
        finite = torch.isfinite(sink)
        sink_mean = torch.where(finite, sink, 0).sum(0) / finite.sum(0).clamp_min(1)
        dormant = ((sink >= s.sink_threshold) & finite).sum(0) / finite.sum(0).clamp_min(1)
        cols: dict[str, Any] = {
            "previous_token": sums.score(b.layer, "previous_token"),
            "duplicate_token": sums.score(b.layer, "duplicate_token"),
            "induction": sums.score(b.layer, "induction"),
            "retrieval": sums.score(b.layer, "retrieval"),
            "sink": sink_mean.numpy(),
            "dormant_frac": dormant.numpy(),
        }
        if weights:
            w = b.weights(model)
            cols["copying"] = _circuits.ov_copying(w, w_e, w_u).numpy()
            cols["copying_top10"] = _circuits.ov_topk_copying(w, w_e, w_u, sample).numpy()
            cols["qk_same_token"] = _circuits.qk_same_token(w, w_e).numpy()
        for h in range(b.n_heads):
            row = {"site": b.attn_site, "layer": b.layer, "head": h}
            row.update({k: float(v[h]) for k, v in cols.items()})
            row["dormant"] = bool(row["dormant_frac"] >= 0.5)
            row["n_nonfinite"] = int(sums.nonfinite[b.layer][h])
            rows.append(row)
    return pd.DataFrame(rows)


def _pad(texts: Sequence[Sequence[int]], max_len: int) -> tuple[Tensor, Tensor]:
    seqs = [list(t)[:max_len] for t in texts if len(t) > 1]
    if not seqs:
        raise HeadsError(
            "texts must hold token-id sequences of at least 2 tokens for the sink scores; got "
            f"{len(texts)} sequences, none that long."
        )
    n = max(len(t) for t in seqs)
    ids = torch.zeros(len(seqs), n, dtype=torch.long)
    valid = torch.zeros(len(seqs), n, dtype=torch.bool)
    for i, t in enumerate(seqs):
        ids[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        valid[i, : len(t)] = True
    return ids, valid
