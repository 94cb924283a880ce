"""A hand-built language model whose units are, by construction, of known kinds.

``PlantedLM`` has two sites, ``neurons`` (``n_units`` MLP-like units) and ``resid``
(``d_resid`` residual-like units):

- ``neurons`` 0: dead (always -1);
- ``neurons`` 1: a token detector (1 exactly where the token is ``TOKEN``);
- ``neurons`` 2: a bigram detector (1 exactly where ``BIGRAM[0]`` is followed by ``BIGRAM[1]``);
- ``neurons`` 3: positional (about 1 at positions ``POS_RANGE``, about 0 elsewhere);
- ``resid`` 0: a massive activation (``MASSIVE`` at position 0 of every sequence);
- every other unit is a control: a dense random function of the current and previous token.

Padded positions get huge values (5000 / -7000), which any statistic that reads padding would
turn into wrong labels. ``planted_corpus`` plants the bigram often, and its second token far
more often after other tokens, so that the bigram detector is not a token detector.

Imported as ``units._planted`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

VOCAB = 32
TOKEN = 7
BIGRAM = (3, 5)
POS_RANGE = (4, 8)
MASSIVE = 1000.0

#: The labels each planted unit must get (every other unit gets none).
EXPECTED = {
    ("neurons", 0): {"label_dead"},
    ("neurons", 1): {"label_token"},
    ("neurons", 2): {"label_bigram"},
    ("neurons", 3): {"label_positional"},
    ("resid", 0): {"label_massive", "label_positional"},
}


class PlantedLM(nn.Module):
    def __init__(self, n_units: int = 64, d_resid: int = 32, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("emb", torch.randn(VOCAB, n_units, generator=g))
        self.register_buffer("prev_emb", torch.randn(VOCAB + 1, n_units, generator=g))
        self.register_buffer("res_emb", torch.randn(VOCAB, d_resid, generator=g))
        self.neurons = nn.Identity()
        self.resid = nn.Identity()
        self.head = nn.Linear(d_resid, 2)

    def forward(self, input_ids, attention_mask=None):
        b, p = input_ids.shape
        mask = (
            torch.ones(b, p, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        )
        prev = torch.cat([torch.full((b, 1), VOCAB), input_ids[:, :-1]], dim=1)
        pos = torch.arange(p)[None, :].expand(b, p)
        h = torch.relu(self.emb[input_ids] + self.prev_emb[prev])
        h[..., 0] = -1.0
        h[..., 1] = (input_ids == TOKEN).float()
        h[..., 2] = ((prev == BIGRAM[0]) & (input_ids == BIGRAM[1])).float()
        h[..., 3] = ((pos >= POS_RANGE[0]) & (pos < POS_RANGE[1])).float()
        h[..., 3] += 0.05 * self.emb[input_ids][..., 3]
        h = self.neurons(torch.where(mask[..., None], h, 5000.0))
        r = 0.5 * self.res_emb[input_ids]
        r[:, 0, 0] = MASSIVE
        r = self.resid(torch.where(mask[..., None], r, -7000.0))
        return self.head(r + 0 * h[..., : r.shape[-1]])


def planted_corpus(
    n_seq: int = 128, seq: int = 64, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``: uniform tokens with planted pairs; every 5th row padded."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, size=(n_seq, seq))
    for r in range(n_seq):
        for c in range(1, seq):
            u = rng.random()
            if u < 0.02:
                ids[r, c - 1], ids[r, c] = BIGRAM
            elif u < 0.10:
                other = rng.integers(0, VOCAB - 1)
                ids[r, c - 1], ids[r, c] = other + (other >= BIGRAM[0]), BIGRAM[1]
    mask = np.ones((n_seq, seq), dtype=bool)
    for r in range(0, n_seq, 5):
        mask[r, rng.integers(seq // 2, seq) :] = False
    return torch.as_tensor(ids), torch.as_tensor(mask)


def planted_batches(ids: torch.Tensor, mask: torch.Tensor, batch_size: int = 32) -> list[dict]:
    return [
        {"input_ids": ids[i : i + batch_size], "attention_mask": mask[i : i + batch_size].long()}
        for i in range(0, len(ids), batch_size)
    ]
