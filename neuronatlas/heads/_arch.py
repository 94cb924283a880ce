"""Where the attention heads of a model live: one small adapter table per architecture family.

For every transformer block this finds, by the model's own module names,

- the **attention module** (its ``:attn`` site gives the probabilities ``(batch, head, q, k)``);
- the **output projection** whose *input* is the concatenated head outputs
  ``(batch, pos, n_heads * d_head)`` (``transformer.h.N.attn.c_proj:input``,
  ``model.layers.N.self_attn.o_proj:input``, ``encoder.layer.N.attention.output.dense:input``);
- the per-head weights ``W_Q, W_K, W_V`` ``(head, d_model, d_head)`` and ``W_O``
  ``(head, d_head, d_model)`` in the row-vector convention ``q = x @ W_Q[h]``,
  ``out = sum_h z[h] @ W_O[h]`` (GPT-2's fused ``Conv1D`` ``c_attn`` is split, grouped-query
  key/value heads of Llama-style models are repeated to one per query head).

A family is one :class:`_Family` row: relative module paths plus a function reading the weights.
Families without a weight reader still get every attention-pattern score.

Examples:
    >>> import torch
    >>> from neuronatlas.heads import AttnOnlyTransformer
    >>> model = AttnOnlyTransformer(vocab=16, d_model=8, n_layers=2, n_heads=2, d_head=4, n_ctx=8)
    >>> [(b.layer, b.attn_site, b.n_heads) for b in find_heads(model)]
    [(0, 'blocks.0.attn:attn', 2), (1, 'blocks.1.attn:attn', 2)]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from neuronatlas.errors import NeuronAtlasError
from neuronatlas.sites import find_blocks

__all__ = ["HeadBlock", "HeadWeights", "HeadsError", "embedding_matrices", "find_heads"]


class HeadsError(NeuronAtlasError, ValueError):
    """A head analysis cannot run on this model or with these arguments."""


@dataclass(frozen=True)
class HeadWeights:
    """Per-head weights of one attention block (row-vector convention, ``x @ W``).

    Attributes:
        W_Q, W_K, W_V: ``(head, d_model, d_head)``; key/value heads shared by several query
            heads (grouped-query attention) are repeated so that index ``h`` is head ``h``'s.
        W_O: ``(head, d_head, d_model)``.
    """

    W_Q: Tensor
    W_K: Tensor
    W_V: Tensor
    W_O: Tensor


@dataclass(frozen=True)
class HeadBlock:
    """The heads of one transformer block.

    Attributes:
        layer: index of the block.
        attn: module path of the self-attention module; ``attn_site`` its ``:attn`` site.
        out_proj: module path of the output projection; ``z_site`` its ``:input`` site, the head
            outputs ``(batch, pos, n_heads * d_head)``.
        n_heads, d_head: query heads and their width; ``n_kv_heads`` key/value heads.
        family: the architecture family recognized.
    """

    layer: int
    attn: str
    out_proj: str
    n_heads: int
    n_kv_heads: int
    d_head: int
    family: str
    _reader: Callable[[nn.Module, HeadBlock], HeadWeights] | None = None

    @property
    def attn_site(self) -> str:
        return f"{self.attn}:attn"

    @property
    def z_site(self) -> str:
        return f"{self.out_proj}:input"

    def weights(self, model: nn.Module) -> HeadWeights:
        """The block's per-head weights, detached, float32 (see :class:`HeadWeights`)."""
        if self._reader is None:
            raise HeadsError(
                f"Weight-based head scores are not available for the {self.family} family "
                f"(block {self.attn}): only attention-pattern scores are. Known weight layouts: "
                f"{', '.join(f.name for f in _FAMILIES if f.reader is not None)}."
            )
        with torch.no_grad():
            return self._reader(model, self)


def _split_in(weight: Tensor, n: int, d_head: int) -> Tensor:
    """``nn.Linear`` weight ``(n * d_head, d_model)`` -> ``(n, d_model, d_head)``."""
    return weight.detach().float().reshape(n, d_head, -1).transpose(1, 2)


def _split_out(weight: Tensor, n: int, d_head: int) -> Tensor:
    """``nn.Linear`` weight ``(d_model, n * d_head)`` -> ``(n, d_head, d_model)``."""
    return weight.detach().float().T.reshape(n, d_head, -1)


def _linear_reader(q: str, k: str, v: str) -> Callable[[nn.Module, HeadBlock], HeadWeights]:
    def read(model: nn.Module, b: HeadBlock) -> HeadWeights:
        mods = dict(model.named_modules())
        rep = b.n_heads // b.n_kv_heads
        wq = _split_in(mods[f"{b.attn}.{q}"].weight, b.n_heads, b.d_head)
        wk = _split_in(mods[f"{b.attn}.{k}"].weight, b.n_kv_heads, b.d_head)
        wv = _split_in(mods[f"{b.attn}.{v}"].weight, b.n_kv_heads, b.d_head)
        wo = _split_out(mods[b.out_proj].weight, b.n_heads, b.d_head)
        return HeadWeights(wq, wk.repeat_interleave(rep, 0), wv.repeat_interleave(rep, 0), wo)

    return read


def _gpt2_reader(model: nn.Module, b: HeadBlock) -> HeadWeights:
    mods = dict(model.named_modules())
    w = mods[f"{b.attn}.c_attn"].weight.detach().float()  # Conv1D: (d_model, 3 * d_model)
    d = b.n_heads * b.d_head
    split = [w[:, i * d : (i + 1) * d].reshape(-1, b.n_heads, b.d_head).transpose(0, 1)
             for i in range(3)]  # fmt: skip
    wo = mods[b.out_proj].weight.detach().float().reshape(b.n_heads, b.d_head, -1)
    return HeadWeights(split[0], split[1], split[2], wo)


@dataclass(frozen=True)
class _Family:
    """One architecture family: module paths relative to a block, and how to count heads."""

    name: str
    attn: tuple[str, ...]
    out_proj: str  # relative to the block
    requires: tuple[str, ...] = ()  # relative to the attention module
    reader: Callable[[nn.Module, HeadBlock], HeadWeights] | None = None


_FAMILIES: tuple[_Family, ...] = (
    _Family("GPT-2", ("attn",), "attn.c_proj", ("c_attn",), _gpt2_reader),
    _Family(
        "BERT / RoBERTa / MiniLM",
        ("attention.self",),
        "attention.output.dense",
        ("query", "key", "value"),
        _linear_reader("query", "key", "value"),
    ),
    _Family(
        "Llama / Mistral / Qwen / Gemma",
        ("self_attn",),
        "self_attn.o_proj",
        ("q_proj", "k_proj", "v_proj"),
        _linear_reader("q_proj", "k_proj", "v_proj"),
    ),
    _Family(
        "OPT",
        ("self_attn",),
        "self_attn.out_proj",
        ("q_proj", "k_proj", "v_proj"),
        _linear_reader("q_proj", "k_proj", "v_proj"),
    ),
    _Family(
        "ViT",
        ("attention.attention",),
        "attention.output.dense",
        ("query", "key", "value"),
        _linear_reader("query", "key", "value"),
    ),
    _Family(
        "neuronatlas attention-only transformer",
        ("attn",),
        "attn.out",
        ("q", "k", "v"),
        _linear_reader("q", "k", "v"),
    ),
)


def _head_counts(model: nn.Module, attn: nn.Module, family: _Family) -> tuple[int, int, int]:
    cfg = getattr(model, "config", None)
    n = (
        getattr(attn, "num_heads", None)
        or getattr(attn, "num_attention_heads", None)
        or getattr(attn, "n_heads", None)
        or getattr(cfg, "num_attention_heads", None)
    )
    d = getattr(attn, "head_dim", None) or getattr(attn, "attention_head_size", None)
    if d is None and n and cfg is not None and getattr(cfg, "hidden_size", None):
        d = cfg.hidden_size // n
    kv = getattr(attn, "n_kv_heads", None) or getattr(cfg, "num_key_value_heads", None) or n
    if family.name.startswith("Llama") and getattr(attn, "num_key_value_groups", None):
        kv = n // attn.num_key_value_groups
    if not n or not d:
        raise HeadsError(
            f"Could not read the number of heads of {type(attn).__name__} ({family.name}); "
            "expected an attribute num_heads / num_attention_heads and head_dim, or a config "
            "with num_attention_heads and hidden_size."
        )
    return int(n), int(kv), int(d)


def find_heads(model: nn.Module) -> list[HeadBlock]:
    """The attention blocks of ``model``, in module order (see the module docstring).

    A block is an element ``N`` of an ``nn.ModuleList`` / ``nn.Sequential`` holding an
    attention module and an output projection of a known family; detection uses relative
    module names only, so any nesting depth works.

    Raises:
        HeadsError: no block of a known family was found (the message lists the families).
    """
    names = dict(model.named_modules())

    def match(path: str) -> tuple[str, str, _Family] | None:
        for fam in _FAMILIES:
            attn = next((f"{path}.{a}" for a in fam.attn if f"{path}.{a}" in names), None)
            out = f"{path}.{fam.out_proj}"
            if (
                attn is not None
                and out in names
                and all(f"{attn}.{r}" in names for r in fam.requires)
            ):
                return attn, out, fam
        return None

    blocks = [
        HeadBlock(i, attn, out, *_head_counts(model, names[attn], fam), fam.name, fam.reader)
        for i, (attn, out, fam) in enumerate(find_blocks(names, match))
    ]
    if not blocks:
        known = "; ".join(f"{f.name}: N.{'|'.join(f.attn)} + N.{f.out_proj}" for f in _FAMILIES)
        raise HeadsError(
            f"Found no attention block of a known architecture in {type(model).__name__}. "
            f"Blocks are elements N of a ModuleList holding an attention module and its output "
            f"projection: {known}."
        )
    return blocks


def embedding_matrices(model: nn.Module) -> tuple[Tensor, Tensor]:
    """``W_E (vocab, d_model)`` and ``W_U (d_model, vocab)`` of a language model, float32.

    ``W_U`` is the output embedding's weight transposed; a model without one (an encoder such
    as ``BertModel``) is read with tied embeddings, ``W_U = W_E.T`` (as BERT's masked-LM head
    ties them). Layer norms and biases are left out (the usual approximation of weight-only
    circuit analysis).
    """
    get_in = getattr(model, "get_input_embeddings", None)
    emb = get_in() if callable(get_in) else None
    if emb is None or not hasattr(emb, "weight"):
        raise HeadsError(
            f"{type(model).__name__} has no get_input_embeddings(): vocabulary-projected "
            "scores need the token embedding (W_E) and unembedding (W_U)."
        )
    w_e = emb.weight.detach().float()
    get_out = getattr(model, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    w_u = out.weight.detach().float().T if out is not None else w_e.T
    if w_u.shape[1] != w_e.shape[0]:
        w_u = w_u[:, : w_e.shape[0]]
    return w_e, w_u
