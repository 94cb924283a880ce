"""Function vectors: mean head outputs of in-context-learning prompts, heads chosen by their
causal indirect effect."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from neuronatlas.intervene import heads, intervene, mean
from neuronatlas.sites import Site, resolve_sites
from neuronatlas.steer._data import Inputs, _device, collect, encode
from neuronatlas.steer._errors import SteeringError
from neuronatlas.steer._vector import SteeringVector, data_hash

__all__ = ["function_vector", "head_outputs", "indirect_effects"]


def _same_length_batches(seqs: Sequence[Tensor], batch_size: int) -> Iterator[list[int]]:
    """Indices of sequences grouped by length (no padding), in chunks of ``batch_size``."""
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        by_len.setdefault(len(s), []).append(i)
    for n in sorted(by_len):
        idx = by_len[n]
        for k in range(0, len(idx), batch_size):
            yield idx[k : k + batch_size]


def _answer_ids(answers: Sequence[Any], tokenizer: Any) -> Tensor:
    out = []
    for a in answers:
        if isinstance(a, str):
            if tokenizer is None:
                raise SteeringError("Text answers need a tokenizer (pass tokenizer=...).")
            ids = tokenizer(a)["input_ids"]
            if not ids:
                raise SteeringError(f"The answer {a!r} has no tokens.")
            out.append(int(ids[0]))
        else:
            out.append(int(torch.as_tensor(a).reshape(-1)[0]))
    return torch.tensor(out)


@torch.no_grad()
def _answer_prob(
    model: nn.Module, seqs: Sequence[Tensor], answers: Tensor, edits: Any, batch_size: int
) -> Tensor:
    """``P(answer_i | prompt_i)`` at the last position, with ``edits`` applied."""
    dev = _device(model)
    probs = torch.empty(len(seqs), dtype=torch.float64)
    with intervene(model, edits) if edits else torch.no_grad():
        for idx in _same_length_batches(seqs, batch_size):
            ids = torch.stack([seqs[i] for i in idx]).to(dev)
            out = model(input_ids=ids)
            logits = (out.logits if hasattr(out, "logits") else out)[:, -1].float()
            p = torch.softmax(logits, -1).cpu()
            probs[idx] = p[torch.arange(len(idx)), answers[idx]].double()
    return probs


def _head_sites(
    model: nn.Module, sites: str | Site | Sequence[str | Site], n_heads: int
) -> list[Site]:
    resolved = resolve_sites(model, sites)
    for s in resolved:
        if s.hook != "input":
            raise SteeringError(
                f"Head site {s.name!r}: expected the input of an attention output projection "
                "(e.g. 'transformer.h.*.attn.c_proj:input', 'model.layers.*.self_attn.o_proj:input'), "
                "where the heads' outputs are still separate."
            )
    return resolved


def head_outputs(
    model: nn.Module,
    prompts: Inputs,
    sites: str | Site | Sequence[str | Site],
    *,
    tokenizer: Any = None,
    batch_size: int = 16,
) -> dict[str, Tensor]:
    """Mean activation at the last token of each prompt, at attention-output-projection inputs.

    ``ā_l = (1/|P|) Σ_p a_l(p)[-1]``, ``(n_heads · d_head,)`` per site: the task-conditioned
    mean head outputs of "Function Vectors in Large Language Models" (Todd et al., 2023).
    """
    seqs = encode(prompts, tokenizer, what="prompts")
    acts = collect(model, seqs, sites, reduce="last", batch_size=batch_size)
    return {name: a.double().mean(0).float() for name, a in acts.items()}


def indirect_effects(
    model: nn.Module,
    corrupted: Inputs,
    answers: Sequence[Any],
    means: dict[str, Tensor],
    n_heads: int,
    *,
    tokenizer: Any = None,
    batch_size: int = 16,
) -> Any:
    """Average indirect effect of every head (Todd et al., 2023).

    For corrupted prompts ``p̃`` (in-context examples with shuffled labels) and their correct
    answers ``y``, the causal indirect effect of head ``(l, j)`` is

        ``CIE(l, j | p̃) = P(y | p̃, a_lj := ā_lj) − P(y | p̃)``

    with the head's output at the last token replaced by its task-conditioned mean ``ā_lj``
    (:func:`head_outputs`) through the :func:`~neuronatlas.intervene.heads` adapter, and
    ``P`` the probability of the answer's first token. ``AIE(l, j)`` is its mean over prompts.

    Returns:
        A DataFrame ``site, layer, head, aie`` sorted by decreasing ``aie``.
    """
    import pandas as pd

    seqs = encode(corrupted, tokenizer, what="corrupted")
    ans = _answer_ids(answers, tokenizer)
    if len(ans) != len(seqs):
        raise SteeringError(
            f"{len(seqs)} corrupted prompts but {len(ans)} answers; give one answer per prompt."
        )
    sites = _head_sites(model, list(means), n_heads)
    base = _answer_prob(model, seqs, ans, None, batch_size)
    rows = []
    for site in sites:
        for j in range(n_heads):
            edit = heads(n_heads, mean(means[site.name], positions=[-1]), heads=[j])
            p = _answer_prob(model, seqs, ans, {site.name: edit}, batch_size)
            rows.append(
                {"site": site.name, "layer": site.layer, "head": j, "aie": float((p - base).mean())}
            )
    return pd.DataFrame(rows).sort_values("aie", ascending=False, ignore_index=True)


@torch.no_grad()
def function_vector(
    model: nn.Module,
    prompts: Inputs,
    corrupted: Inputs,
    answers: Sequence[Any],
    head_sites: str | Site | Sequence[str | Site],
    n_heads: int,
    add_site: str | Site,
    *,
    n_top: int = 10,
    tokenizer: Any = None,
    batch_size: int = 16,
) -> tuple[SteeringVector, Any]:
    """A function vector: the summed mean outputs of the heads with the largest indirect effect.

    From "Function Vectors in Large Language Models" (Todd et al., 2023):

    1. ``ā_lj``: mean output of head ``(l, j)`` at the last token of in-context-learning
       ``prompts`` of one task (:func:`head_outputs`);
    2. ``AIE(l, j)`` on ``corrupted`` prompts (:func:`indirect_effects`); the set ``A`` holds
       the ``n_top`` heads of largest AIE;
    3. ``v = Σ_{(l,j) ∈ A} ā_lj`` *in the residual stream*: each head's mean is passed
       through its layer's output projection on its own (``o_proj(ā_lj ⊙ 1_j) − o_proj(0)``,
       which removes the bias).

    The vector is added to the hidden state at ``add_site`` (a middle layer's block output)
    at the last token of a zero-shot prompt: ``vector.edit(1.0, positions="last_prompt")``.

    Args:
        model: a causal LM.
        prompts: ICL prompts of the task (texts or token ids); the mean is at their last token.
        corrupted: the same kind of prompts with shuffled labels.
        answers: the correct answer of each corrupted prompt (text or token id; its first
            token is scored).
        head_sites: the inputs of the attention output projections, e.g.
            ``"transformer.h.*.attn.c_proj:input"``.
        n_heads: heads per layer.
        add_site: where the vector is added (``layer`` in ``meta``).
        n_top: ``|A|``, the number of heads summed.

    Returns:
        ``(SteeringVector(method="fv"), the AIE table of every head)``.
    """
    sites = _head_sites(model, head_sites, n_heads)
    means = head_outputs(model, prompts, sites, tokenizer=tokenizer, batch_size=batch_size)
    table = indirect_effects(
        model, corrupted, answers, means, n_heads, tokenizer=tokenizer, batch_size=batch_size
    )
    if not 1 <= n_top <= len(table):
        raise SteeringError(
            f"n_top must be in [1, {len(table)}] (the number of heads); got {n_top}."
        )
    top = table.head(n_top)
    modules = dict(model.named_modules())
    dev = _device(model)
    vec = None
    for site_name, group in top.groupby("site", sort=False):
        site = next(s for s in sites if s.name == site_name)
        proj = modules[site.module]
        a = means[str(site_name)].to(dev)
        d_head = a.shape[-1] // n_heads
        mask = torch.zeros_like(a)
        for j in group["head"]:
            mask[int(j) * d_head : (int(j) + 1) * d_head] = 1
        out = (
            (proj((a * mask)[None, None]) - proj(torch.zeros_like(a)[None, None]))[0, 0]
            .float()
            .cpu()
        )
        vec = out if vec is None else vec + out
    assert vec is not None
    target = resolve_sites(model, add_site)[0]
    if target.hook == "attn":
        raise SteeringError(
            f"add_site {target.name!r} is an ':attn' site; give a block output such as 'transformer.h.2'."
        )
    seqs = encode(prompts, tokenizer, what="prompts")
    meta = {
        "heads": [[r.site, int(r.head), float(r.aie)] for r in top.itertuples()],
        "n_prompts": len(seqs),
        "n_top": n_top,
        "norm": float(vec.norm()),
    }
    return SteeringVector(
        target.name, "fv", {"vector": vec}, data_hash(seqs, encode(corrupted, tokenizer)), meta
    ), table
