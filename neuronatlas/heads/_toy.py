"""A small attention-only transformer with named modules, for planted heads and the induction
experiment.

``embed -> (+ pos_embed) -> blocks.N.attn (q, k, v, out) -> unembed``: no MLPs and no layer
norms, so the residual stream is exactly the sum of the embeddings and of every head's output,
as in the attention-only models of "A Mathematical Framework for Transformer Circuits" (2021).
Each attention module returns ``(output, probabilities)``, which is what the Recorder's
``:attn`` sites read.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["AttnOnlyTransformer"]


class Attention(nn.Module):
    """Multi-head self-attention (causal unless ``causal=False``) returning its probabilities."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, *, causal: bool = True) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.causal = n_heads, d_head, causal
        self.q = nn.Linear(d_model, n_heads * d_head, bias=False)
        self.k = nn.Linear(d_model, n_heads * d_head, bias=False)
        self.v = nn.Linear(d_model, n_heads * d_head, bias=False)
        self.out = nn.Linear(n_heads * d_head, d_model, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (batch, pos, d_model)`` -> ``(output (batch, pos, d_model), probs (batch, head, q, k))``."""
        b, t, _ = x.shape

        def split(y: Tensor) -> Tensor:
            return y.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        if self.causal:
            future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        probs = scores.softmax(-1)
        z = (probs @ v).transpose(1, 2).reshape(b, t, -1)
        return self.out(z), probs


class Block(nn.Module):
    """One residual attention block: ``x + attn(x)``."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, *, causal: bool = True) -> None:
        super().__init__()
        self.attn = Attention(d_model, n_heads, d_head, causal=causal)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attn(x)[0]


class AttnOnlyTransformer(nn.Module):
    """An attention-only causal transformer over token ids.

    Args:
        vocab: vocabulary size; ``d_model``: residual width; ``n_layers``, ``n_heads``,
            ``d_head``: blocks, heads per block and head width; ``n_ctx``: longest sequence
            (learned positional embeddings).

    Examples:
        >>> model = AttnOnlyTransformer(vocab=16, d_model=8, n_layers=1, n_heads=2, d_head=4, n_ctx=8)
        >>> tuple(model(torch.zeros(3, 5, dtype=torch.long)).shape)
        (3, 5, 16)
    """

    def __init__(
        self, *, vocab: int, d_model: int, n_layers: int, n_heads: int, d_head: int, n_ctx: int
    ) -> None:
        super().__init__()
        self.settings = dict(
            vocab=vocab, d_model=d_model, n_layers=n_layers, n_heads=n_heads, d_head=d_head,
            n_ctx=n_ctx,
        )  # fmt: skip
        self.n_ctx = n_ctx
        self.embed = nn.Embedding(vocab, d_model)
        self.pos_embed = nn.Embedding(n_ctx, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_head) for _ in range(n_layers))
        self.unembed = nn.Linear(d_model, vocab, bias=False)

    def forward(self, input_ids: Tensor) -> Tensor:
        """``input_ids (batch, pos)`` -> logits ``(batch, pos, vocab)``."""
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.embed(input_ids) + self.pos_embed(pos)
        for block in self.blocks:
            x = block(x)
        return self.unembed(x)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def get_output_embeddings(self) -> nn.Linear:
        return self.unembed
