"""Deterministic token subsampling by hashing (doc, pos).

Whether a token is kept depends only on its ``(doc, pos)`` and the seed, never on the batch it
came in, the order of batches or the process that saw it. So a resumed run keeps exactly the
tokens the interrupted one would have, and shards of a corpus subsample consistently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neuronatlas.errors import StoreError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 output function on uint64 arrays (arithmetic mod 2**64).

    From "Fast splittable pseudorandom number generators" (Steele, Lea & Flood, OOPSLA 2014):
    ``z = x + 0x9E3779B97F4A7C15; z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;
    z = (z ^ z >> 27) * 0x94D049BB133111EB; return z ^ z >> 31``.
    """
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _as_u64(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(np.int64, copy=False).reshape(-1).view(np.uint64)


def subsample_mask(doc: Any, pos: Any, keep_fraction: float, seed: int = 0) -> np.ndarray:
    """Which tokens a ``keep_fraction`` subsample keeps: a pure function of ``(doc, pos, seed)``.

    The token ``(doc, pos)`` is kept when ``h >> 11 < round(keep_fraction * 2**53)`` with
    ``h = splitmix64(splitmix64(doc ^ splitmix64(seed)) ^ pos)`` on 64-bit integers, so each token
    is kept independently with probability ``keep_fraction`` (to within 2**-53).

    Args:
        doc: ``(n,)`` document ids (int, numpy or torch, any device; flattened).
        pos: ``(n,)`` positions, same length.
        keep_fraction: in ``(0, 1]``; ``1`` keeps everything without hashing.
        seed: selects another, independent subsample.

    Returns:
        ``(n,)`` bool numpy array, True for kept tokens.

    Raises:
        StoreError: ``keep_fraction`` outside ``(0, 1]`` or ``doc``/``pos`` of different lengths.

    Examples:
        >>> import numpy as np
        >>> m = subsample_mask(np.zeros(100_000), np.arange(100_000), 0.25)
        >>> round(float(m.mean()), 2)
        0.25
        >>> bool((m == subsample_mask(np.zeros(100_000), np.arange(100_000), 0.25)).all())
        True
    """
    keep_fraction = check_keep_fraction(keep_fraction)
    d, p = _as_u64(doc), _as_u64(pos)
    if d.shape != p.shape:
        raise StoreError(
            f"subsample_mask needs doc and pos of the same length; got {d.size} and {p.size}."
        )
    if keep_fraction == 1.0:
        return np.ones(d.shape, dtype=bool)
    s = _splitmix64(np.array([seed], dtype=np.int64).view(np.uint64))
    h = _splitmix64(_splitmix64(d ^ s) ^ p)
    threshold = np.uint64(round(keep_fraction * 2**53))
    return (h >> np.uint64(11)) < threshold


def check_keep_fraction(keep_fraction: float) -> float:
    """Return ``keep_fraction`` as a float in ``(0, 1]`` or raise :class:`StoreError`."""
    try:
        f = float(keep_fraction)
    except (TypeError, ValueError):
        f = float("nan")
    if not 0.0 < f <= 1.0:
        raise StoreError(
            f"keep_fraction must be a number in (0, 1] (the fraction of tokens to keep); got "
            f"{keep_fraction!r}. Use 1.0 to keep every token."
        )
    return f
