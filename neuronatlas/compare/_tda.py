"""Topological RSA: geo-topological transforms of RDMs.

Lin & Kriegeskorte, "The Topology and Geometry of Neural Representations" (2023). The
geo-topological transform ``GT_{l,u}`` keeps the geometry of a representation at intermediate
distances and reduces it to topology (neighbor / not neighbor) at both ends:

    GT(d) = 0 for d < l;  (d - l) / (u - l) for l ≤ d ≤ u;  1 for d > u,

with ``l`` and ``u`` the ``low`` and ``up`` quantiles of the RDM's own dissimilarities
(``np.quantile``, linear interpolation). ``GT_{0,1}`` is the min-max normalized RDM (pure
geometry); ``low = up`` gives a binary neighborhood graph (pure topology). The geodesic
transform replaces each dissimilarity by the shortest-path length in the graph that keeps only
the edges strictly between 0 and 1 of the min-max normalized RDM (Floyd–Warshall on the
weighted graph; unreachable pairs are ``inf``). Both equal rsatoolbox's
``geotopological_transform`` / ``geodesic_transform``. Topological RSA compares transformed RDMs
with any RDM comparison (:func:`topological_rsa`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neuronatlas.compare._rsa import Comparison, Metric, compare_rdms, rdm, squareform
from neuronatlas.compare._validate import CompareError, check_vectors

__all__ = ["geodesic_transform", "geotopological_transform", "topological_rsa"]


def _check_bounds(low: float, up: float) -> None:
    if not (0 <= low <= up <= 1):
        raise CompareError(f"Need 0 ≤ low ≤ up ≤ 1 (quantiles); got low={low!r}, up={up!r}.")


def geotopological_transform(v: Any, low: float = 0.0, up: float = 1.0) -> torch.Tensor:
    """``GT_{l,u}`` of a condensed RDM (``l``, ``u`` = the ``low``/``up`` quantiles of it).

    Examples:
        >>> geotopological_transform(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), 0.25, 0.75).tolist()
        [0.0, 0.0, 0.5, 1.0, 1.0]
    """
    _check_bounds(low, up)
    d, _ = check_vectors(v)
    if d.ndim != 1:
        raise CompareError(f"Expected one condensed RDM vector; got shape {tuple(d.shape)}.")
    q = torch.from_numpy(np.quantile(d.cpu().numpy(), [low, up])).to(d)
    lo, hi = q[0], q[1]
    out = torch.where(d < lo, torch.zeros_like(d), torch.ones_like(d))
    mid = (d >= lo) & (d <= hi)
    if bool(hi > lo):
        out = torch.where(mid, (d - lo) / (hi - lo), out)
    else:  # rsatoolbox divides 0 by 0 here; a single threshold is a neighborhood graph
        out = torch.where(mid, torch.zeros_like(d), out)
    return out


def geodesic_transform(v: Any) -> torch.Tensor:
    """Shortest-path distances over the graph of the min-max normalized RDM's edges in (0, 1)."""
    from neuronatlas._lazy import require

    shortest_path = require("scipy.sparse.csgraph").shortest_path
    d, _ = check_vectors(v)
    if d.ndim != 1:
        raise CompareError(f"Expected one condensed RDM vector; got shape {tuple(d.shape)}.")
    span = d.max() - d.min()
    if not bool(span > 0):
        raise CompareError("All dissimilarities are equal; the geodesic transform is undefined.")
    w = (d - d.min()) / span
    w = torch.where(w == 1, torch.zeros_like(w), w)  # long edges removed; 0 = no edge
    full = squareform(w).cpu().numpy()
    paths = shortest_path(full, method="FW", directed=False)
    iu = np.triu_indices(full.shape[0], 1)
    return torch.from_numpy(paths[iu]).to(d)


def topological_rsa(
    x: Any,
    y: Any,
    *,
    low: float = 0.0,
    up: float = 1.0,
    metric: Metric = "correlation",
    comparison: Comparison = "cosine",
) -> torch.Tensor:
    """Similarity of the geo-topological transforms of two representations' RDMs.

    Args:
        x, y: ``(stimulus, unit)`` representations of the same stimuli.
        low, up: quantiles bounding the geometric range of ``GT`` (see the module docstring).
        metric: the RDM's dissimilarity. comparison: how the transformed RDMs are compared.

    Returns:
        0-d float64 tensor.
    """
    _check_bounds(low, up)
    a = geotopological_transform(rdm(x, metric), low, up)
    b = geotopological_transform(rdm(y, metric), low, up)
    return compare_rdms(a, b, comparison)
