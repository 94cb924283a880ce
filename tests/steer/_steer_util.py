"""Helpers shared by the steering tests."""

from __future__ import annotations

import torch


def token_lists(seed: int, n: int, length: int) -> list[torch.Tensor]:
    """``n`` random token-id sequences of ``length`` (ids 1..127, the tiny models' vocabulary)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 128, (length,), generator=g) for _ in range(n)]
