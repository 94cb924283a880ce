"""Dynamic Activation Composition: several steering vectors, each with a per-step strength."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from neuronatlas.intervene import EditContext, intervene
from neuronatlas.steer._data import _device
from neuronatlas.steer._errors import SteeringError
from neuronatlas.steer._vector import SteeringVector

__all__ = ["dac_generate", "top_p_kl"]


def top_p_kl(p_logits: Tensor, q_logits: Tensor, top_p: float = 0.95) -> float:
    """``KL(P ‖ Q)`` over the union of the top-p sets of ``P`` and ``Q``, both renormalized there.

    The divergence Scalena et al. (2024) turn into a steering strength; ``P`` is the
    unsteered next-token distribution, ``Q`` the steered one.
    """

    def keep(logits: Tensor) -> Tensor:
        probs, order = torch.softmax(logits.double(), -1).sort(descending=True)
        drop = probs.cumsum(-1) > top_p
        drop[1:] = drop[:-1].clone()  # keep the first token past top_p
        drop[0] = False
        out = torch.zeros_like(drop)
        out[order] = ~drop
        return out

    sel = keep(p_logits) | keep(q_logits)
    lp = torch.log_softmax(p_logits.double()[sel], -1)
    lq = torch.log_softmax(q_logits.double()[sel], -1)
    return float((lp.exp() * (lp - lq)).sum())


class _Schedule:
    """Edit adding ``Σ_k α_k[p] · v_k`` at absolute position ``p`` (positions without an
    entry are untouched)."""

    def __init__(self, terms: list[tuple[Tensor, dict[int, float]]]) -> None:
        self.terms = terms

    def __call__(self, t: Tensor, ctx: EditContext) -> Tensor | None:
        out = t
        for v, alphas in self.terms:
            coef = torch.tensor(
                [alphas.get(int(p), 0.0) for p in ctx.positions], dtype=t.dtype, device=t.device
            )
            if bool((coef != 0).any()):
                out = out + coef.view(1, -1, 1) * v.to(device=t.device, dtype=t.dtype)
        return out


@torch.no_grad()
def dac_generate(
    model: nn.Module,
    prompt: Tensor,
    properties: Mapping[str, SteeringVector],
    *,
    max_new_tokens: int = 30,
    alpha_start: float = 2.0,
    alpha_max: float = 2.0,
    top_p: float = 0.95,
    eos_token_id: int | None = None,
) -> dict[str, Any]:
    """Greedy generation steered by several properties, each with a strength chosen per step.

    "Multi-property Steering of Large Language Models with Dynamic Activation Composition"
    (Scalena, Sarti and Nissim, 2024). Steering starts at the prompt's last position and each
    generated token's position ``n_prompt − 1 + t`` gets its own strength. At step ``t``, for
    each property ``k`` with vector ``v_k``:

    1. ``P`` = the unsteered next-token distribution; ``Q_k`` = the distribution with ``v_k``
       alone added with its earlier strengths ``α_k,<t`` and ``alpha_start`` at the current
       position;
    2. ``α_k,t = clip(KL(P ‖ Q_k), 0, alpha_max)``, the KL taken over the union of the top-p
       (``top_p``) sets of ``P`` and ``Q_k`` (:func:`top_p_kl`): a property that would not
       change the next token is switched off, one that would is applied up to ``alpha_max``;
    3. the next token is the argmax with every property added with its ``α_k,≤t``.

    The paper's vectors are per-position (from ICL vs. zero-shot prompts); here each
    property is one vector (e.g. from :func:`~neuronatlas.steer.caa`) applied at every steered
    position. Each step costs ``2 + n_properties`` forward passes over the sequence (no KV
    cache).

    Args:
        model: a causal LM.
        prompt: ``(pos,)`` token ids.
        properties: ``{name: additive SteeringVector}`` (sites may differ).
        max_new_tokens: tokens to generate.
        alpha_start, alpha_max, top_p: as above (the paper uses 2, 2 and 0.95).
        eos_token_id: stop when generated.

    Returns:
        ``{"tokens": (new,) tensor, "alpha": {name: [α per step]}, "kl": {name: [KL per step]}}``.
    """
    if not properties:
        raise SteeringError("dac_generate: give at least one property vector.")
    for name, v in properties.items():
        if "vector" not in v.tensors:
            raise SteeringError(
                f"Property {name!r}: DAC adds vectors; {v.method!r} vectors have none."
            )
    dev = _device(model)
    seq = torch.as_tensor(prompt, dtype=torch.int64).reshape(-1).to(dev)
    n_prompt = len(seq)
    alphas: dict[str, dict[int, float]] = {k: {} for k in properties}
    log_a: dict[str, list[float]] = {k: [] for k in properties}
    log_kl: dict[str, list[float]] = {k: [] for k in properties}

    def logits_with(schedules: dict[str, dict[int, float]]) -> Tensor:
        by_site: dict[str, list[tuple[Tensor, dict[int, float]]]] = {}
        for k, sched in schedules.items():
            if sched:
                by_site.setdefault(properties[k].site, []).append((properties[k].vector, sched))
        edits = {site: _Schedule(terms) for site, terms in by_site.items()}
        ctx = intervene(model, edits, n_prompt=n_prompt) if edits else torch.no_grad()
        with ctx:
            out = model(input_ids=seq[None])
        return (out.logits if hasattr(out, "logits") else out)[0, -1].float().cpu()

    new = []
    for _ in range(max_new_tokens):
        pos = len(seq) - 1
        base = logits_with({})
        for k in properties:
            trial = {k: {**alphas[k], pos: alpha_start}}
            kl = top_p_kl(base, logits_with(trial), top_p)
            a = min(max(kl, 0.0), alpha_max)
            alphas[k][pos] = a
            log_a[k].append(a)
            log_kl[k].append(kl)
        tok = int(logits_with(alphas).argmax())
        new.append(tok)
        seq = torch.cat([seq, torch.tensor([tok], device=dev)])
        if eos_token_id is not None and tok == eos_token_id:
            break
    return {"tokens": torch.tensor(new), "alpha": log_a, "kl": log_kl}
