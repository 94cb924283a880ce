"""Attention-pattern head scores: plain functions on attention probabilities.

Each function takes ``attn (batch, head, q, k)`` of one block, with the token ids
``ids (batch, pos)`` and ``content (batch, pos)`` (True for real, non-special, non-padding
tokens), and returns per-head ``(sum, count)`` so that batches add up exactly; the score is
``sum / count``.

Definitions ("In-context Learning and Induction Heads", Olsson et al., 2022), each a mean over
the query positions ``i`` where the set of keys is non-empty:

- **previous-token** score: the attention from position ``i`` to position ``i - 1``;
- **duplicate-token** score: the total attention from ``i`` to the *earlier occurrences of the
  same token*, keys ``j < i`` with ``ids[j] == ids[i]``;
- **induction** score: the total attention from ``i`` to the *tokens right after the earlier
  occurrences* of the current token, keys ``j <= i`` with ``ids[j - 1] == ids[i]`` and
  ``j - 1 < i``.

On a random sequence repeated twice these are the classic scores: a previous-token head has
previous-token score 1, an induction head attends from each token of the second copy to the
token after its first occurrence.

Attention sinks ("Active-Dormant Attention Heads: Mechanistically Demystifying Extreme-Token
Phenomena in LLMs", Guo et al., 2024): the **sink** mass of a head is the attention from every
query ``i >= 1`` to the first position and to special tokens (``[CLS]``, ``[SEP]``, ``<s>``...),
averaged over queries; a head is **dormant** on a sequence when its mean sink mass there is at
least ``threshold`` (default 0.5: most of its attention goes to the sink), else active.

Retrieval ("Retrieval Head Mechanistically Explains Long-Context Factuality", Wu et al., 2024):
a needle of random tokens is hidden in a haystack of random tokens and the needle is then
repeated (teacher-forced) at the end. While position ``i`` of the repeat predicts the next needle
token, a head *copies* it when the key of its maximum attention is the needle position holding
that token; the **retrieval** score is the fraction of needle tokens so copied.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "duplicate_token",
    "induction",
    "previous_token",
    "retrieval",
    "sink_mass",
]

Pair = tuple[Tensor, Tensor]  # per-head (sum, count), float64


def _masked_mean_parts(attn: Tensor, keys: Tensor, content: Tensor) -> Pair:
    """Per head: sum over queries with at least one key of the attention on ``keys``."""
    keys = keys & content[:, None, :] & content[:, :, None]  # (batch, q, k)
    has = keys.any(-1)  # (batch, q)
    mass = (attn.double() * keys[:, None].double()).sum(-1)  # (batch, head, q)
    total = (mass * has[:, None].double()).sum((0, 2))
    count = has.sum().double().expand(attn.shape[1])
    return total, count


def previous_token(attn: Tensor, ids: Tensor, content: Tensor) -> Pair:
    """Attention from ``i`` to ``i - 1`` (see module docstring)."""
    t = attn.shape[-1]
    ar = torch.arange(t, device=attn.device)
    keys = (ar[:, None] - 1 == ar[None, :]).expand(ids.shape[0], t, t)
    return _masked_mean_parts(attn, keys, content)


def duplicate_token(attn: Tensor, ids: Tensor, content: Tensor) -> Pair:
    """Attention from ``i`` to earlier occurrences ``j < i`` of ``ids[i]``."""
    t = attn.shape[-1]
    ar = torch.arange(t, device=attn.device)
    same = ids[:, :, None] == ids[:, None, :]
    return _masked_mean_parts(attn, same & (ar[None, :] < ar[:, None]), content)


def induction(attn: Tensor, ids: Tensor, content: Tensor) -> Pair:
    """Attention from ``i`` to ``j`` where ``ids[j - 1] == ids[i]`` and ``j - 1 < i``."""
    b, t = ids.shape
    ar = torch.arange(t, device=attn.device)
    prev_same = torch.zeros(b, t, t, dtype=torch.bool, device=attn.device)
    prev_same[:, :, 1:] = ids[:, :, None] == ids[:, None, :-1]  # key j: ids[j - 1] == ids[i]
    prev_same[:, :, 1:] &= content[:, None, :-1]
    earlier = (ar[None, :] - 1) < ar[:, None]
    return _masked_mean_parts(attn, prev_same & earlier, content)


def sink_mass(attn: Tensor, special: Tensor, valid: Tensor) -> Tensor:
    """Per sequence and head, the mean attention on the first position and special tokens.

    Args:
        attn: ``(batch, head, q, k)``; ``special``: ``(batch, pos)`` True at special tokens;
            ``valid``: ``(batch, pos)`` True at non-padding positions.

    Returns:
        ``(batch, head)`` mean over valid queries ``i >= 1`` of the attention on the sink keys
        (NaN for a sequence of one token).
    """
    sink = special.clone()
    sink[:, 0] = True
    sink &= valid
    # one batched matrix-vector product in the attention's dtype (sums of at most k
    # probabilities), then float64 for the means
    mass = (attn @ sink[:, None, :, None].to(attn.dtype)).squeeze(-1).double()  # (batch, head, q)
    queries = valid.clone()
    queries[:, 0] = False
    n = queries.sum(-1).double()  # (batch,)
    return (mass * queries[:, None].double()).sum(-1) / n[:, None]


def retrieval(attn: Tensor, targets: Tensor) -> Pair:
    """Per head: how many queries put their maximum attention on their target key.

    Args:
        attn: ``(batch, head, q, k)``; ``targets``: ``(batch, q)`` the key position holding the
            needle token query ``q`` predicts, or -1 for queries that are not scored.
    """
    scored = targets >= 0
    top = attn.argmax(-1)  # (batch, head, q)
    hit = (top == targets[:, None, :]) & scored[:, None, :]
    return hit.sum((0, 2)).double(), scored.sum().double().expand(attn.shape[1])
