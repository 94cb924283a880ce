"""Head ablation, activation patching over (layer, position, head), direct logit attribution.

Every edit goes through :func:`neuronatlas.intervene.intervene` on the head outputs, the input
of each block's attention output projection read as ``(batch, pos, n_heads, d_head)`` (see
:func:`~neuronatlas.heads.find_heads`), so hooks are removed when the call returns.

Examples:
    >>> import torch
    >>> from neuronatlas.heads import AttnOnlyTransformer
    >>> model = AttnOnlyTransformer(vocab=16, d_model=8, n_layers=2, n_heads=2, d_head=4, n_ctx=8)
    >>> ids = torch.randint(16, (2, 8))
    >>> with ablate_heads(model, {1: [0, 1]}):
    ...     ablated = model(ids)
    >>> bool(torch.allclose(ablated, model.unembed(model.blocks[0](model.embed(ids) + model.pos_embed.weight))))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor, nn

from neuronatlas.heads._arch import HeadBlock, HeadsError, find_heads

__all__ = [
    "ablate_heads",
    "ablate_units",
    "direct_logit_attribution",
    "head_means",
    "patch_heads",
    "record_z",
]

Method = Literal["zero", "mean", "resample"]


def _blocks_by_layer(model: nn.Module) -> dict[int, HeadBlock]:
    return {b.layer: b for b in find_heads(model)}


def _check_heads(blocks: dict[int, HeadBlock], heads: Mapping[int, Sequence[int]]) -> None:
    for layer, hs in heads.items():
        if layer not in blocks:
            raise HeadsError(f"No attention block {layer}; the model has layers {sorted(blocks)}.")
        n = blocks[layer].n_heads
        bad = [h for h in hs if not 0 <= int(h) < n]
        if bad:
            raise HeadsError(f"Layer {layer} has heads 0..{n - 1}; got {bad}.")


def record_z(model: nn.Module, call: Callable[[], Any]) -> dict[str, Tensor]:
    """Head outputs ``{z site: (batch, pos, n_heads * d_head)}`` recorded during ``call()``."""
    from neuronatlas.record import Recorder

    sites = [b.z_site for b in find_heads(model)]
    with Recorder(model, sites) as rec, torch.no_grad():
        call()
        return rec.pop()


def head_means(
    model: nn.Module, call: Callable[[], Any], mask: Tensor | None = None
) -> dict[str, Tensor]:
    """Mean head output per z site ``(n_heads * d_head,)`` over the positions of ``call()``
    (only where ``mask (batch, pos)`` is True, if given): the reference of mean ablation."""
    z = record_z(model, call)
    out = {}
    for name, t in z.items():
        flat = t[mask] if mask is not None else t.reshape(-1, t.shape[-1])
        out[name] = flat.double().mean(0).float()
    return out


@contextmanager
def ablate_heads(
    model: nn.Module,
    heads: Mapping[int, Sequence[int]],
    *,
    method: Method = "zero",
    reference: Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[nn.Module]:
    """Ablate heads while the ``with`` block runs.

    Args:
        heads: ``{layer: [head, ...]}``.
        method: ``"zero"`` (the head's output set to 0), ``"mean"`` (set to its mean,
            ``reference`` from :func:`head_means`) or ``"resample"`` (set to the output at a
            random position of other inputs: ``reference`` maps each z site to a pool
            ``(n, n_heads * d_head)``, e.g. from :func:`record_z`).
    """
    from neuronatlas.intervene import heads as head_edit
    from neuronatlas.intervene import intervene, mean, resample, zero

    blocks = _blocks_by_layer(model)
    _check_heads(blocks, heads)
    if method != "zero" and reference is None:
        raise HeadsError(
            f"method={method!r} needs a reference: head_means(...) for 'mean', record_z(...) "
            "for 'resample'."
        )
    edits = {}
    for layer, hs in heads.items():
        if not hs:
            continue
        b = blocks[layer]
        if method == "zero":
            inner = zero()
        elif method == "mean":
            inner = mean(reference[b.z_site])
        elif method == "resample":
            inner = resample(
                reference[b.z_site].reshape(-1, reference[b.z_site].shape[-1]), generator
            )
        else:
            raise HeadsError(f"method must be 'zero', 'mean' or 'resample'; got {method!r}.")
        edits[b.z_site] = head_edit(b.n_heads, inner, heads=[int(h) for h in hs])
    if not edits:
        yield model
        return
    with intervene(model, edits):
        yield model


@contextmanager
def ablate_units(
    model: nn.Module,
    units: Mapping[str, Sequence[int]],
    *,
    method: Method = "zero",
    reference: Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[nn.Module]:
    """Ablate units of any sites (MLP neurons, residual dimensions) while the block runs.

    Args:
        units: ``{site: [unit, ...]}``, sites as in :func:`neuronatlas.sites.resolve_sites`
            (e.g. ``"transformer.h.3.mlp.c_proj:input"``).
        method: ``"zero"``, ``"mean"`` (``reference[site]`` a ``(unit,)`` mean, e.g. the
            ``mean`` column of the atlas's ``units.parquet``) or ``"resample"``
            (``reference[site]`` a pool ``(n, unit)`` of activations on other inputs).
    """
    from neuronatlas.intervene import intervene, mean, resample, zero

    if method != "zero" and reference is None:
        raise HeadsError(f"method={method!r} needs reference={{site: tensor}}.")
    edits = {}
    for site, us in units.items():
        idx = [int(u) for u in us]
        if method == "zero":
            edits[site] = zero(units=idx)
        elif method == "mean":
            edits[site] = mean(reference[site], units=idx)
        elif method == "resample":
            pool = reference[site]
            edits[site] = resample(pool.reshape(-1, pool.shape[-1]), generator, units=idx)
        else:
            raise HeadsError(f"method must be 'zero', 'mean' or 'resample'; got {method!r}.")
    with intervene(model, edits):
        yield model


def patch_heads(
    model: nn.Module,
    clean: Callable[[], Any],
    corrupted: Callable[[], Any],
    metric: Callable[[Any], float],
    *,
    positions: Sequence[int] | None = None,
):
    """Activation patching over a (layer, position, head) grid.

    The head outputs of the clean run are recorded; then, for every layer, position and head,
    the corrupted run is repeated with that one head's output at that one position replaced
    by its clean value, and ``metric(output)`` is recorded.

    Args:
        clean, corrupted: zero-argument callables running the model on the clean and on the
            corrupted input (same shape), returning its output.
        metric: output -> float (e.g. the logit difference of the right and wrong answer).
        positions: positions to patch (default: all).

    Returns:
        A DataFrame ``layer, pos, head, metric``, plus the attributes ``clean_metric`` and
        ``corrupted_metric`` in ``df.attrs``. The normalized effect is
        ``(metric - corrupted) / (clean - corrupted)``.
    """
    import pandas as pd

    from neuronatlas.intervene import heads as head_edit
    from neuronatlas.intervene import intervene, patch

    blocks = find_heads(model)
    src = record_z(model, clean)
    with torch.no_grad():
        clean_m, corrupt_m = float(metric(clean())), float(metric(corrupted()))
    n_pos = next(iter(src.values())).shape[1]
    pos_list = list(range(n_pos)) if positions is None else [int(p) for p in positions]
    rows = []
    with torch.no_grad():
        for b in blocks:
            for p in pos_list:
                for h in range(b.n_heads):
                    edit = head_edit(b.n_heads, patch(src[b.z_site], positions=[p]), heads=[h])
                    with intervene(model, {b.z_site: edit}):
                        m = float(metric(corrupted()))
                    rows.append({"layer": b.layer, "pos": p, "head": h, "metric": m})
    df = pd.DataFrame(rows)
    df.attrs.update(clean_metric=clean_m, corrupted_metric=corrupt_m)
    span = clean_m - corrupt_m
    df["effect"] = (df["metric"] - corrupt_m) / span if span != 0 else float("nan")
    return df


def _final_norm(model: nn.Module) -> nn.Module | None:
    for path in ("transformer.ln_f", "model.norm", "model.decoder.final_layer_norm", "ln_f"):
        mod = dict(model.named_modules()).get(path)
        if mod is not None:
            return mod
    return None


def direct_logit_attribution(
    model: nn.Module, input_ids: Tensor, targets: Tensor, *, attention_mask: Tensor | None = None
):
    """Direct logit attribution of every head, for causal language models.

    Each head's output ``z[h] @ W_O[h]`` is carried straight to the logits: through the final
    norm with its scale frozen at the value of this forward pass (LayerNorm: centred and divided
    by the standard deviation of the final residual; RMSNorm: divided by its root mean square;
    then times its weight), then through the unembedding column of the target token. With no
    final norm (an attention-only model) the heads' attributions, the embeddings' and the
    biases' add up to the logit exactly.

    Args:
        input_ids: ``(batch, pos)``; targets: ``(batch, pos)`` the token whose logit is
            attributed at each position (-1: skip).

    Returns:
        A DataFrame ``layer, head, dla`` (mean over scored positions) and the per-position
        tensor ``(layer, head, batch, pos)`` in ``df.attrs["per_position"]``.
    """
    import pandas as pd

    from neuronatlas.record import Recorder

    blocks = find_heads(model)
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out_emb is None:
        raise HeadsError(
            f"Direct logit attribution needs a causal LM with an unembedding; "
            f"{type(model).__name__} has no get_output_embeddings(). Load it with "
            "AutoModelForCausalLM."
        )
    norm = _final_norm(model)
    sites = [b.z_site for b in blocks] + ([f"{_path_of(model, norm)}:input"] if norm else [])
    kwargs = {"input_ids": input_ids}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    with Recorder(model, sites) as rec, torch.no_grad():
        model(**kwargs) if getattr(model, "config", None) is not None else model(input_ids)
        acts = rec.pop()
    w_u = out_emb.weight.detach().float()  # (vocab, d_model)
    tgt = targets.clamp_min(0)
    u = w_u[tgt]  # (batch, pos, d_model)
    scale = None
    if norm is not None:
        resid = acts[sites[-1]].float()
        gamma = norm.weight.detach().float()
        centred = "RMS" not in type(norm).__name__
        if centred:
            sd = (resid.var(-1, unbiased=False) + norm.eps).sqrt()
        else:
            sd = (
                resid.pow(2).mean(-1)
                + getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6))
            ).sqrt()
        scale = (sd, gamma, centred)
    per = []
    for b in blocks:
        z = acts[b.z_site].float()
        z = z.view(*z.shape[:2], b.n_heads, b.d_head)
        w_o = b.weights(model).W_O  # (head, d_head, d_model)
        contrib = torch.einsum("bphd,hdm->hbpm", z, w_o)
        if scale is not None:
            sd, gamma, centred = scale
            if centred:
                contrib = contrib - contrib.mean(-1, keepdim=True)
            contrib = contrib / sd[None, ..., None] * gamma
        per.append((contrib * u[None]).sum(-1))  # (head, batch, pos)
    per_t = torch.stack(per)  # (layer, head, batch, pos)
    valid = (targets >= 0).float()
    means = (per_t * valid).sum((-1, -2)) / valid.sum().clamp_min(1)
    rows = [
        {"layer": b.layer, "head": h, "dla": float(means[i, h])}
        for i, b in enumerate(blocks)
        for h in range(b.n_heads)
    ]
    df = pd.DataFrame(rows)
    df.attrs["per_position"] = per_t
    return df


def _path_of(model: nn.Module, module: nn.Module | None) -> str:
    for name, mod in model.named_modules():
        if mod is module:
            return name
    raise HeadsError("internal: module not found in the model")
