"""Fixtures of the head tests: a transformer with hand-set (planted) heads."""

from __future__ import annotations

import math

import pytest
import torch

from neuronatlas.heads import AttnOnlyTransformer

VOCAB, N_CTX = 64, 32


def planted_model(beta: float = 40.0) -> AttnOnlyTransformer:
    """A 2-layer, 2-head attention-only transformer with hand-set weights.

    Residual stream: ``[token one-hot | position one-hot | previous token | output]``.

    - L0H0, a previous-token head: query position ``i`` matches key position ``i - 1``; it
      writes the attended token into the *previous token* slot;
    - L0H1 attends to its own position and writes nothing;
    - L1H0, an induction head: the current token (query) matches the *previous token* slot
      (key), so position ``i`` attends to the positions right after earlier occurrences of
      its token; it writes the token found there into the *output* slot, which the
      unembedding reads;
    - L1H1 has zero weights (uniform attention over the prefix) and writes nothing.
    """
    v, t = VOCAB, N_CTX
    d_model, d_head = 3 * v + t, max(v, t)
    tok, pos, prev, out = 0, v, v + t, 2 * v + t
    model = AttnOnlyTransformer(
        vocab=v, d_model=d_model, n_layers=2, n_heads=2, d_head=d_head, n_ctx=t
    )
    scale = beta * math.sqrt(d_head)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.weight[:, tok : tok + v] = torch.eye(v)
        model.pos_embed.weight[:, pos : pos + t] = torch.eye(t)
        model.unembed.weight[:, out : out + v] = torch.eye(v)

        def rows(attn, name, head):  # Linear weight rows of one head: (d_head, d_model)
            w = getattr(attn, name).weight
            return w[head * d_head : (head + 1) * d_head]

        a0, a1 = model.blocks[0].attn, model.blocks[1].attn
        for i in range(t):  # L0H0: q_i = scale * f_i, k_j = f_{j+1}
            rows(a0, "q", 0)[i, pos + i] = scale
            if i + 1 < t:
                rows(a0, "k", 0)[i + 1, pos + i] = 1.0
            rows(a0, "q", 1)[i, pos + i] = scale  # L0H1: q_i = scale * f_i, k_j = f_j
            rows(a0, "k", 1)[i, pos + i] = 1.0
        for s in range(v):
            rows(a0, "v", 0)[s, tok + s] = 1.0
            a0.out.weight[prev + s, s] = 1.0  # head 0 output -> previous-token slot
            rows(a1, "q", 0)[s, tok + s] = scale  # L1H0: current token vs previous token
            rows(a1, "k", 0)[s, prev + s] = 1.0
            rows(a1, "v", 0)[s, tok + s] = 1.0
            a1.out.weight[out + s, s] = 1.0
    return model.eval()


@pytest.fixture
def planted() -> AttnOnlyTransformer:
    return planted_model()
