"""Vocabulary projection of MLP neurons: the tokens each neuron's output weight promotes.

A hidden MLP neuron ``i`` adds ``x_i * w_i`` to the residual stream, where ``w_i`` is its row of
the MLP's output (down) projection. Read through the unembedding ``W_U`` (the "logit lens" of
nostalgebraist, 2020; applied to FFN value vectors in Geva et al., "Transformer Feed-Forward
Layers Build Predictions by Promoting Concepts in the Vocabulary Space", 2022), ``W_U w_i``
scores every token by how much a unit of activation raises (or lowers) its logit directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from neuronatlas.sites import Site, resolve_sites
from neuronatlas.units._labels import TaxonomyError

__all__ = ["output_weights", "vocab_projection"]


def output_weights(model: nn.Module, site: str | Site) -> tuple[Site, Tensor]:
    """Each neuron's output weight ``w_i``: ``(unit, d_model)``, for an MLP site.

    The site must be the input of a linear map: ``nn.Linear`` (weight ``(d_model, unit)``:
    Llama's ``down_proj``, BERT's ``output.dense``) or Hugging Face's ``Conv1D`` (weight
    ``(unit, d_model)``: GPT-2's ``c_proj``) — the ``mlp`` preset's sites.

    Raises:
        TaxonomyError: the site is not the input of such a module.
        SiteError: the site does not resolve.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> site, w = output_weights(model, "2:input")
        >>> site.name, tuple(w.shape)
        ('2:input', (8, 3))
    """
    sites = resolve_sites(model, [site] if isinstance(site, Site) else site)
    if len(sites) != 1:
        raise TaxonomyError(
            f"output_weights takes one site; {site!r} resolves to {len(sites)}: "
            f"{[s.name for s in sites][:6]}. Call it per site."
        )
    s = sites[0]
    module = dict(model.named_modules())[s.module]
    weight = getattr(module, "weight", None)
    if s.hook != "input" or not isinstance(weight, Tensor) or weight.dim() != 2:
        raise TaxonomyError(
            f"Site {s.name!r} is not the input of a linear output projection (got hook "
            f"{s.hook!r} on a {type(module).__name__}). Use the MLP neurons, i.e. the input of "
            "the down projection: the 'mlp' preset or e.g. 'transformer.h.0.mlp.c_proj:input'."
        )
    if isinstance(module, nn.Linear):
        return s, weight.detach().T
    if type(module).__name__ == "Conv1D":
        return s, weight.detach()
    raise TaxonomyError(
        f"Site {s.name!r} feeds a {type(module).__name__}; expected nn.Linear or a Hugging "
        "Face Conv1D, whose weight layout is known."
    )


def _final_norm(model: nn.Module, spec: str) -> nn.Module | None:
    if spec == "ignore":
        return None
    modules = dict(model.named_modules())
    if spec != "fold":
        if spec not in modules:
            from neuronatlas.errors import closest

            near = closest(spec, modules)
            raise TaxonomyError(
                f"final_norm {spec!r} is not a module of the model. Use 'fold' (find it), "
                f"'ignore', or a module name{f' such as {near[0]!r}' if near else ''}."
            )
        return modules[spec]
    found = None
    for name, m in modules.items():
        in_block = any(part.isdigit() for part in name.split("."))
        if not in_block and "norm" in type(m).__name__.lower() and hasattr(m, "weight"):
            found = m  # the last normalization outside the numbered blocks
    return found


def _fold(w: Tensor, norm: nn.Module | None) -> Tensor:
    """Apply the final norm's per-dimension gain (and centering, for LayerNorm) to ``w``."""
    if norm is None:
        return w
    cls = type(norm).__name__
    gain = norm.weight.detach().float().to(w.device)
    if gain.shape != w.shape[-1:]:
        raise TaxonomyError(
            f"The final norm {cls} has a weight of shape {tuple(gain.shape)}, which does not "
            f"match d_model = {w.shape[-1]}. Pass final_norm='ignore' or the right module name."
        )
    if "gemma" in cls.lower() and "rms" in cls.lower():
        gain = 1.0 + gain  # Gemma stores its RMSNorm gain as an offset from 1
    if isinstance(norm, nn.LayerNorm) or ("layernorm" in cls.lower() and "rms" not in cls.lower()):
        w = w - w.mean(dim=-1, keepdim=True)
    return w * gain


def vocab_projection(
    model: nn.Module,
    site: str | Site,
    tokenizer: Any = None,
    k: int = 10,
    *,
    final_norm: str = "fold",
    unembedding: Tensor | nn.Module | None = None,
    block: int = 256,
) -> pd.DataFrame:
    """The ``k`` tokens each MLP neuron promotes most and suppresses most, via ``W_U w_i``.

    ``w_i`` is neuron ``i``'s output weight (:func:`output_weights`; GPT-2's ``Conv1D`` stores
    it as a row, ``nn.Linear`` as a column). With ``final_norm="fold"`` the model's final
    normalization is folded in: ``w_i`` is centered (LayerNorm only: it subtracts the mean over
    ``d_model``) and multiplied by the norm's gain; its division by the residual's scale is a
    positive factor per position, which changes no ranking, and biases (the norm's and the
    unembedding's) do not depend on the neuron, so both are left out. ``final_norm="ignore"``
    uses ``w_i`` as it is. Meant for models whose residual stream reaches the unembedding
    through the final norm only (GPT-2, Llama, Mistral, Qwen, Gemma, GPT-NeoX, OPT, Phi); for
    models with a nonlinear head (BERT's MLM head) it is an approximation.

    Args:
        model: the model (with ``get_output_embeddings()``, or pass ``unembedding``).
        site: one MLP site, the input of the down projection (e.g. from the ``mlp`` preset).
        tokenizer: turns ids into token strings (``convert_ids_to_tokens``); None gives ids as
            strings.
        k: tokens kept on each side.
        final_norm: ``"fold"`` (find the last norm outside the blocks and fold it), ``"ignore"``,
            or the module name of the final norm.
        unembedding: ``(vocab, d_model)`` weight or a module with such a ``weight``, when the
            model has no ``get_output_embeddings()``.
        block: neurons projected at a time (bounds memory: ``block * vocab`` floats).

    Returns:
        One row per neuron: ``site, unit, vocab_top, vocab_top_id, vocab_top_logit,
        vocab_bottom, vocab_bottom_id, vocab_bottom_logit`` — list columns of length ``k``,
        best first (largest logit first for top, smallest first for bottom).

    Raises:
        TaxonomyError: no unembedding, a site that is not an MLP output projection's input,
            mismatched widths or a bad ``k``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))  # d_model = 3
        >>> table = vocab_projection(model, "2:input", k=2, unembedding=torch.randn(5, 3))
        >>> table.shape[0], table.columns.tolist()[:4], len(table.vocab_top[0])
        (8, ['site', 'unit', 'vocab_top', 'vocab_top_id'], 2)
    """
    s, w = output_weights(model, site)
    if unembedding is None:
        get = getattr(model, "get_output_embeddings", None)
        unembedding = get() if callable(get) else None
    if isinstance(unembedding, nn.Module):
        unembedding = getattr(unembedding, "weight", None)
    if not isinstance(unembedding, Tensor) or unembedding.dim() != 2:
        raise TaxonomyError(
            f"vocab_projection needs the unembedding of {type(model).__name__}, which has no "
            "get_output_embeddings(). Load the model with its LM head (e.g. "
            "AutoModelForCausalLM) or pass unembedding=<(vocab, d_model) weight>."
        )
    wu = unembedding.detach().float()
    vocab, d_model = wu.shape
    if w.shape[1] != d_model:
        raise TaxonomyError(
            f"The neurons of {s.name!r} write {w.shape[1]}-dim vectors but the unembedding is "
            f"(vocab, d_model) = {tuple(wu.shape)}. Pass the unembedding of this model."
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= vocab:
        raise TaxonomyError(f"k must be an int in [1, {vocab}] (the vocabulary); got {k!r}.")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise TaxonomyError(f"block must be an int >= 1; got {block!r}.")
    w = _fold(w.float().to(wu.device), _final_norm(model, final_norm))
    tops, bottoms = [], []
    with torch.inference_mode():
        for start in range(0, w.shape[0], block):
            logits = w[start : start + block] @ wu.T  # (block, vocab)
            tops.append(torch.topk(logits, k, dim=1))
            bottoms.append(torch.topk(logits, k, dim=1, largest=False))
    top_v = torch.cat([t.values for t in tops]).cpu().numpy()
    top_i = torch.cat([t.indices for t in tops]).cpu().numpy()
    bot_v = torch.cat([t.values for t in bottoms]).cpu().numpy()
    bot_i = torch.cat([t.indices for t in bottoms]).cpu().numpy()
    names = _token_strings(tokenizer, np.concatenate([top_i.reshape(-1), bot_i.reshape(-1)]))
    n = w.shape[0]
    top_s, bot_s = names[: n * k].reshape(n, k), names[n * k :].reshape(n, k)
    return pd.DataFrame(
        {
            "site": [s.name] * n,
            "unit": np.arange(n, dtype=np.int32),
            "vocab_top": [list(r) for r in top_s],
            "vocab_top_id": [list(map(int, r)) for r in top_i],
            "vocab_top_logit": [list(map(float, r)) for r in top_v],
            "vocab_bottom": [list(r) for r in bot_s],
            "vocab_bottom_id": [list(map(int, r)) for r in bot_i],
            "vocab_bottom_logit": [list(map(float, r)) for r in bot_v],
        }
    )


def _token_strings(tokenizer: Any, ids: np.ndarray) -> np.ndarray:
    if tokenizer is None:
        return np.array([str(i) for i in ids.tolist()], dtype=object)
    convert = getattr(tokenizer, "convert_ids_to_tokens", None)
    if callable(convert):
        uniq, inv = np.unique(ids, return_inverse=True)
        toks = np.array([str(t) for t in convert(uniq.tolist())], dtype=object)
        return toks[inv]
    if callable(tokenizer):
        return np.array([str(tokenizer(int(i))) for i in ids.tolist()], dtype=object)
    raise TaxonomyError(
        f"tokenizer must have convert_ids_to_tokens (a Hugging Face tokenizer) or be a "
        f"function id -> str; got {type(tokenizer).__name__}."
    )
