"""Measure steering: a behaviour metric and a fluency cost, over layer × coefficient sweeps."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from neuronatlas.intervene import intervene
from neuronatlas.intervene._edits import Positions
from neuronatlas.sites import resolve_sites
from neuronatlas.steer._data import Inputs, _device, batches, encode, forward_logits
from neuronatlas.steer._errors import SteeringError
from neuronatlas.steer._vector import SteeringVector

__all__ = ["fluency", "generate", "generation_rate", "logprob_margin", "sweep"]

Behaviour = Callable[[nn.Module], float]


def _logprobs(
    model: nn.Module, seqs: Sequence[Tensor], batch_size: int
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Per batch: log-probs ``(batch, pos-1, vocab)`` of the next token, the targets and the
    mask of positions whose next token is a real token."""
    for ids, mask in batches(seqs, batch_size):
        logp = torch.log_softmax(forward_logits(model, ids, mask)[:, :-1].float(), -1).cpu()
        valid = (mask[:, 1:] * mask[:, :-1]).to(torch.bool)
        yield logp, ids[:, 1:], valid


@torch.no_grad()
def fluency(
    model: nn.Module,
    neutral: Inputs,
    *,
    tokenizer: Any = None,
    edits: Mapping[str, Any] | None = None,
    reference: list[Tensor] | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Perplexity on neutral text, and the KL divergence from the unsteered model.

    ``ppl = exp(mean NLL)`` over every predicted token of ``neutral``;
    ``kl = mean_t KL(P_edited(·|x_<t) ‖ P_ref(·|x_<t))`` (nats per token) against
    ``reference``, the unsteered log-probs (as returned in ``"reference"`` by a call without
    edits). Positions whose log-probs are not finite are counted in ``n_nonfinite`` and left
    out of both means.

    Args:
        model: a causal LM.
        neutral: texts (with ``tokenizer``) or token ids; at least 2 tokens each.
        edits: ``{site: edit}`` applied while measuring (``None`` = the unsteered model).
        reference: the unsteered log-probs, for ``kl``.
        batch_size: sequences per forward pass.

    Returns:
        ``{"ppl", "nll", "kl", "n_tokens", "n_nonfinite", "reference"}`` (``kl`` is NaN
        without a reference; ``reference`` is this call's log-probs, per batch).
    """
    seqs = encode(neutral, tokenizer, what="neutral")
    if any(len(s) < 2 for s in seqs):
        raise SteeringError("neutral: every text needs at least 2 tokens to be scored.")
    nll_sum, kl_sum, n, bad = 0.0, 0.0, 0, 0
    kept: list[Tensor] = []
    with intervene(model, edits) if edits else contextlib.nullcontext():
        for i, (logp, tgt, valid) in enumerate(_logprobs(model, seqs, batch_size)):
            finite = torch.isfinite(logp).all(-1)
            bad += int((valid & ~finite).sum())
            ok = valid & finite
            nll_sum += float(-logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)[ok].double().sum())
            n += int(ok.sum())
            if reference is not None:
                ref = reference[i]
                kl = (logp.exp() * (logp - ref)).sum(-1)
                ok_kl = ok & torch.isfinite(kl)
                bad_kl = int((ok & ~torch.isfinite(kl)).sum())
                bad += bad_kl
                kl_sum += float(kl[ok_kl].double().sum())
            kept.append(logp)
    if n == 0:
        raise SteeringError(
            f"fluency: no finite predictions on the neutral text ({bad} non-finite)."
        )
    nll = nll_sum / n
    return {
        "ppl": math.exp(nll),
        "nll": nll,
        "kl": kl_sum / n if reference is not None else float("nan"),
        "n_tokens": n,
        "n_nonfinite": bad,
        "reference": kept,
    }


def logprob_margin(
    positive: Inputs, negative: Inputs, *, tokenizer: Any = None, batch_size: int = 16
) -> Behaviour:
    """Behaviour metric: mean over pairs of ``log p(positive_i) − log p(negative_i)``.

    The log-probability of a sequence is the sum of its next-token log-probs. For CAA-style
    pairs (same prompt, opposite answers) this is the log-odds of the positive answer.

    Returns:
        ``metric(model) -> float``.
    """
    pos = encode(positive, tokenizer, what="positive")
    neg = encode(negative, tokenizer, what="negative")
    if len(pos) != len(neg):
        raise SteeringError(
            f"logprob_margin needs pairs: {len(pos)} positive, {len(neg)} negative."
        )

    def seq_logp(model: nn.Module, seqs: list[Tensor]) -> Tensor:
        out = []
        for logp, tgt, valid in _logprobs(model, seqs, batch_size):
            lp = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
            out.append(torch.where(valid, lp, torch.zeros_like(lp)).double().sum(1))
        return torch.cat(out)

    @torch.no_grad()
    def metric(model: nn.Module) -> float:
        return float((seq_logp(model, pos) - seq_logp(model, neg)).mean())

    return metric


@torch.no_grad()
def generate(
    model: nn.Module,
    prompts: Sequence[Tensor],
    *,
    max_new_tokens: int = 20,
    batch_size: int = 16,
    **kwargs: Any,
) -> list[Tensor]:
    """Greedy continuations (new tokens only) of each prompt with Hugging Face ``generate``.

    Prompts are grouped by length (no padding), so edits see exact positions."""
    dev = _device(model)
    pad = kwargs.pop("pad_token_id", 0)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[Tensor | None] = [None] * len(prompts)
    i = 0
    while i < len(order):
        n = len(prompts[order[i]])
        group = [j for j in order[i : i + batch_size] if len(prompts[j]) == n]
        ids = torch.stack([prompts[j] for j in group]).to(dev)
        gen = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            **kwargs,
        )
        for k, j in enumerate(group):
            out[j] = gen[k, n:].cpu()
        i += len(group)
    return out  # type: ignore[return-value]


def generation_rate(
    prompts: Inputs,
    predicate: Callable[[str], bool],
    *,
    tokenizer: Any,
    max_new_tokens: int = 20,
    batch_size: int = 16,
) -> Behaviour:
    """Behaviour metric: the fraction of greedy continuations whose decoded text satisfies
    ``predicate`` (e.g. "is mostly uppercase")."""
    seqs = encode(prompts, tokenizer, what="prompts")

    def metric(model: nn.Module) -> float:
        gens = generate(model, seqs, max_new_tokens=max_new_tokens, batch_size=batch_size)
        return sum(bool(predicate(tokenizer.decode(g))) for g in gens) / len(gens)

    return metric


def sweep(
    model: nn.Module,
    vectors: Sequence[SteeringVector] | Mapping[str, SteeringVector],
    coefs: Sequence[float],
    behaviour: Behaviour,
    neutral: Inputs,
    *,
    tokenizer: Any = None,
    positions: Positions = "all",
    batch_size: int = 16,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Evaluate steering vectors over sites (layers) × coefficients.

    For every vector and coefficient ``c``, the vector is applied (``vector.edit(c)``) and the
    behaviour metric and the fluency cost on neutral text (:func:`fluency`) are measured. The
    unsteered model is measured once (``behaviour_base``, ``ppl_base``).

    Args:
        model: a causal LM.
        vectors: one steering vector per site (e.g. the output of :func:`caa` for ``"resid"``).
        coefs: coefficients (strength ``λ`` for transport maps).
        behaviour: ``metric(model) -> float`` run under the edit (:func:`logprob_margin`,
            :func:`generation_rate`, or your own).
        neutral: neutral texts or token ids for the fluency cost.
        positions: where the vectors are applied.
        progress: called with a line of text after each cell.

    Returns:
        A pandas DataFrame, one row per (site, coef): ``site, layer, method, coef, behaviour,
        behaviour_base, ppl, ppl_base, ppl_ratio, kl, n_tokens, n_nonfinite``.
    """
    import pandas as pd

    vecs = list(vectors.values()) if isinstance(vectors, Mapping) else list(vectors)
    if not vecs:
        raise SteeringError("sweep: no vectors given.")
    if not coefs:
        raise SteeringError("sweep: no coefficients given.")
    layers = {}
    for v in vecs:
        layers[v.site] = resolve_sites(model, v.site)[0].layer
    base = fluency(model, neutral, tokenizer=tokenizer, batch_size=batch_size)
    b0 = float(behaviour(model))
    rows = []
    for v in vecs:
        for c in coefs:
            edits = {v.site: v.edit(float(c), positions=positions)}
            with intervene(model, edits):
                b = float(behaviour(model))
            f = fluency(
                model,
                neutral,
                tokenizer=tokenizer,
                edits=edits,
                reference=base["reference"],
                batch_size=batch_size,
            )
            rows.append(
                {
                    "site": v.site,
                    "layer": layers[v.site],
                    "method": v.method,
                    "coef": float(c),
                    "behaviour": b,
                    "behaviour_base": b0,
                    "ppl": f["ppl"],
                    "ppl_base": base["ppl"],
                    "ppl_ratio": f["ppl"] / base["ppl"],
                    "kl": f["kl"],
                    "n_tokens": f["n_tokens"],
                    "n_nonfinite": f["n_nonfinite"],
                }
            )
            if progress is not None:
                progress(
                    f"{v.site} coef={c:g}: behaviour={b:.4g} ppl={f['ppl']:.4g} kl={f['kl']:.4g}"
                )
    return pd.DataFrame(rows)
