"""Representational similarity analysis: RDMs, RDM comparisons and noise ceilings.

Definitions follow rsatoolbox (Schütt et al., "Statistical inference on representational
geometries", 2023) and the papers it implements, so numbers agree with it on identical data:

- RDMs (one entry per stimulus pair ``i < j``, the upper triangle in row-major order, as
  ``scipy.spatial.distance.squareform``), computed from chunked matmuls in float64:

  - ``correlation``: ``1 - r(x_i, x_j)``, Pearson correlation across units;
  - ``cosine``: ``1 - x_i·x_j / (‖x_i‖ ‖x_j‖)``;
  - ``euclidean``: squared Euclidean distance per unit, ``‖x_i - x_j‖² / p``
    (rsatoolbox's ``euclidean``);
  - ``crossnobis``: cross-validated squared Mahalanobis distance per unit, averaged over
    leave-one-fold-out splits, ``(x̄_i - x̄_j)ᵀ Λ (x_i - x_j) / p`` with ``x̄`` the mean of the
    other folds and ``Λ`` a noise precision (identity by default) — Walther et al.,
    "Reliability of dissimilarity measures for multi-voxel pattern analysis" (2016). Unbiased:
    its expectation is 0 for stimuli that evoke the same pattern.

- RDM comparisons (similarities; 1 = identical up to what the measure ignores) — Diedrichsen
  et al., "Comparing representational geometries using whitened unbiased-distance-matrix
  similarity" (2021) and Nili et al., "A toolbox for representational similarity analysis"
  (2014):

  - ``cosine``: ``a·b / (‖a‖ ‖b‖)``; ``corr``: Pearson correlation;
  - ``spearman``: Pearson correlation of average ranks (ties share their mean rank);
  - ``rho-a``: ``12 Σ (r_a - r̄)(r_b - r̄) / (m³ - m)`` over ``m`` pairs (Spearman without
    tie correction);
  - ``tau-a``: Kendall's τ_a, ``(concordant - discordant) / (m(m-1)/2)``, ties in either
    RDM counting as neither;
  - ``cosine_cov`` (whitened cosine) and ``corr_cov`` (whitened Pearson): the cosine of the
    double-centered second-moment matrices ``G = -½ H D H`` (``H = I - 11ᵀ/n``) — the
    whitening of Diedrichsen et al. for independent, equal-variance pattern noise; for
    ``corr_cov`` the mean distance is subtracted from ``D``'s off-diagonal entries first.

- Noise ceilings from one RDM per subject, leave one subject out (rsatoolbox's
  ``boot_noise_ceiling``) — Nili et al. (2014): the *upper* bound averages, over subjects, the
  similarity of the subject's RDM to the pooled RDM of all subjects; the *lower* bound pools
  all other subjects. Pooling is the average that is best under the comparison: mean RDM
  (``corr`` after z-scoring each RDM), RMS-normalized mean (``cosine``, ``cosine_cov``), mean
  rank (``spearman``, ``rho-a``, ``tau-a``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import torch

from neuronatlas.compare._validate import CompareError, as_matrix, check_vectors

__all__ = [
    "COMPARISONS",
    "RDM_METRICS",
    "compare_rdms",
    "condensed_index",
    "noise_ceiling",
    "rank",
    "rdm",
    "rdm_crossnobis",
    "squareform",
]

RDM_METRICS = ("correlation", "cosine", "euclidean")
COMPARISONS = ("cosine", "corr", "spearman", "rho-a", "tau-a", "cosine_cov", "corr_cov")
Metric = Literal["correlation", "cosine", "euclidean"]
Comparison = Literal["cosine", "corr", "spearman", "rho-a", "tau-a", "cosine_cov", "corr_cov"]

# rows of one block product, and at most this many entries in it (16 Mi float64 = 128 MiB)
_ROW_BLOCK = 512
_BLOCK_ENTRIES = 1 << 24
_SUB_BLOCK = 128  # rows of the strips that cover a block's diagonal square


def n_stimuli(n_pairs: int) -> int:
    """The number of stimuli ``n`` of a condensed RDM with ``n(n-1)/2`` entries."""
    n = round((1 + np.sqrt(1 + 8 * n_pairs)) / 2)
    if n * (n - 1) // 2 != n_pairs:
        raise CompareError(
            f"A condensed RDM has n·(n-1)/2 entries for n stimuli; {n_pairs} is not of that form."
        )
    return n


def condensed_index(n: int, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Position of pair ``(i, j)``, ``i < j``, in a condensed RDM over ``n`` stimuli."""
    return i * n - i * (i + 1) // 2 + (j - i - 1)


def squareform(v: Any) -> torch.Tensor:
    """A condensed RDM vector as the symmetric ``(stimulus, stimulus)`` matrix (zero diagonal)."""
    t, _ = check_vectors(v)
    n = n_stimuli(t.shape[-1])
    iu = torch.triu_indices(n, n, 1, device=t.device)
    out = torch.zeros(n, n, dtype=t.dtype, device=t.device)
    out[iu[0], iu[1]] = t
    return out + out.T


def _gram_to_condensed(z: torch.Tensor, diag: torch.Tensor | None, scale: float) -> torch.Tensor:
    """``scale·(d_i + d_j - 2 z_i·z_j)`` (or ``1 - z_i·z_j`` when ``diag`` is None) over i < j.

    Only the upper triangle of the Gram matrix is multiplied (~52% of the full product's
    flops): each block of ``_ROW_BLOCK`` rows is multiplied with the columns right of it in one
    product, and its diagonal square in ``_SUB_BLOCK``-row strips from the diagonal on. The
    block products are the only temporaries; each row's upper part goes straight into its
    place in the condensed vector — on CPU by one numpy call per piece that also applies
    ``1 - ·`` (no extra pass over the block).
    """
    n = z.shape[0]
    out = torch.empty(n * (n - 1) // 2, dtype=torch.float64, device=z.device)
    rows = max(1, min(_ROW_BLOCK, _BLOCK_ENTRIES // max(n, 1)))
    cpu = z.device.type == "cpu"
    fused = cpu and diag is None
    dst = out.numpy() if cpu else out

    def product(r0: int, r1: int, c0: int, c1: int) -> Any:
        """Rows ``r0:r1`` against columns ``c0:c1``, transformed unless ``fused``."""
        block = z[r0:r1] @ z[c0:c1].T
        if diag is not None:
            block.mul_(-2).add_(diag[r0:r1, None]).add_(diag[None, c0:c1]).mul_(scale)
        elif not fused:
            block.neg_().add_(1.0)
        return block.numpy() if cpu else block

    def put(off: int, src: Any) -> int:
        if fused:
            np.subtract(1.0, src, out=dst[off : off + src.shape[0]])
        else:
            dst[off : off + src.shape[0]] = src
        return off + src.shape[0]

    off = 0
    for i0 in range(0, n - 1, rows):
        i1 = min(i0 + rows, n - 1)
        right = product(i0, i1, i1, n)  # (i1 - i0, n - i1): the columns right of the block
        for s0 in range(i0, i1, _SUB_BLOCK):
            s1 = min(s0 + _SUB_BLOCK, i1)
            square = product(s0, s1, s0, i1)  # rows s0:s1, columns s0:i1
            for r in range(s1 - s0):
                off = put(off, square[r, r + 1 :])
                off = put(off, right[s0 - i0 + r])
    return out


def rdm(x: Any, metric: Metric = "correlation") -> torch.Tensor:
    """The representational dissimilarity matrix of ``x``, as a condensed float64 vector.

    Args:
        x: ``(stimulus, unit)`` representation (tensor or array; computed on its device).
        metric: ``"correlation"``, ``"cosine"`` or ``"euclidean"`` (see the module docstring).

    Returns:
        ``(stimulus·(stimulus-1)/2,)`` float64: the upper triangle, row-major (``i < j``).

    Examples:
        >>> import torch
        >>> x = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [0.0, 2.0, 4.0]])
        >>> [round(v, 6) for v in rdm(x, "correlation").tolist()]
        [2.0, 0.0, 2.0]
    """
    if metric not in RDM_METRICS:
        raise CompareError(
            f"metric must be one of {list(RDM_METRICS)} (or use rdm_crossnobis for repeated "
            f"measurements); got {metric!r}."
        )
    z = as_matrix(x, "x")
    if metric == "euclidean":
        return _gram_to_condensed(z, (z * z).sum(1), 1.0 / z.shape[1])
    if metric == "correlation":
        z = z - z.mean(1, keepdim=True)
    norms = z.norm(dim=1)
    if bool((norms == 0).any()):
        k = int((norms == 0).sum())
        raise CompareError(
            f"{k} stimuli have a {'constant' if metric == 'correlation' else 'zero'} pattern "
            f"across units; the {metric} distance to them is undefined. Drop those stimuli or "
            "use metric='euclidean'."
        )
    # in place only on the centered copy (z may share memory with the caller's array)
    z = z.div_(norms[:, None]) if metric == "correlation" else z / norms[:, None]
    return _gram_to_condensed(z, None, 1.0)


def rdm_crossnobis(x: Any, noise: Any = None, *, remove_mean: bool = False) -> torch.Tensor:
    """Crossnobis RDM from repeated measurements: cross-validated Mahalanobis distances.

    Walther et al., "Reliability of dissimilarity measures for multi-voxel pattern analysis"
    (2016). For each fold ``k`` (a repetition or an imaging run holding every stimulus once):
    ``d_ij^(k) = (x̄_i - x̄_j)ᵀ Λ (x_i^(k) - x_j^(k)) / p`` with ``x̄`` the mean over the other
    folds; the RDM is the mean over folds. Equals rsatoolbox's ``calc_rdm(method="crossnobis")``
    with one fold per cross-validation group.

    Args:
        x: ``(fold, stimulus, unit)`` measurements.
        noise: ``(unit, unit)`` noise precision ``Λ`` (e.g. the inverse of a shrinkage estimate
            of the residual covariance); ``None`` = identity (cross-validated Euclidean).
        remove_mean: subtract each pattern's mean across units first.

    Returns:
        condensed float64 RDM over the stimuli.
    """
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 3 or t.shape[0] < 2:
        raise CompareError(
            "rdm_crossnobis needs (fold, stimulus, unit) measurements with at least 2 folds; got "
            f"shape {tuple(t.shape)}."
        )
    t = as_matrix(t.reshape(-1, t.shape[-1]), "x").reshape(t.shape)
    if remove_mean:
        t = t - t.mean(-1, keepdim=True)
    n_fold, n, p = t.shape
    lam = None
    if noise is not None:
        lam = torch.as_tensor(np.asarray(noise) if not isinstance(noise, torch.Tensor) else noise)
        lam = lam.to(torch.float64).to(t.device)
        if lam.shape != (p, p):
            raise CompareError(
                f"noise must be a ({p}, {p}) precision matrix; got {tuple(lam.shape)}."
            )
    total = t.sum(0)
    out = torch.zeros(n * (n - 1) // 2, dtype=torch.float64, device=t.device)
    iu = torch.triu_indices(n, n, 1, device=t.device)
    for k in range(n_fold):
        test = t[k]
        train = (total - test) / (n_fold - 1)
        a = train @ lam if lam is not None else train
        kern = a @ test.T  # (stimulus, stimulus): x̄_i Λ x_j
        d = kern.diagonal()
        full = d[None, :] + d[:, None] - kern - kern.T
        out += full[iu[0], iu[1]] / p
    return out / n_fold


def rank(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (1-based; ties share their mean rank) of a 1-D tensor, as float64.

    Equals ``scipy.stats.rankdata(v, method="average")``. On CPU with :func:`_rank_numpy` (a
    plain sort of packed integer keys instead of an argsort), with torch elsewhere.
    """
    if v.device.type != "cpu":
        order = torch.argsort(v)
        sv = v[order]
        new = torch.ones(v.numel(), dtype=torch.bool, device=v.device)
        new[1:] = sv[1:] != sv[:-1]
        group = torch.cumsum(new, 0) - 1
        starts = torch.nonzero(new).flatten()
        ends = torch.cat([starts[1:], torch.tensor([v.numel()], device=v.device)])
        out = torch.empty(v.numel(), dtype=torch.float64, device=v.device)
        out[order] = ((starts + ends + 1).to(torch.float64) / 2)[group]
        return out
    a = np.ascontiguousarray(v.numpy())
    if a.dtype.kind != "f":  # integers: ranked as they are (float64 could merge large ones)
        return torch.from_numpy(_rank_argsort(a))
    return torch.from_numpy(_rank_numpy(a.astype(np.float64, copy=False)))


# index fields wider than this (over 2**40 entries) would leave too few value bits: argsort
_MAX_INDEX_BITS = 40
_LOW63 = np.int64(0x7FFF_FFFF_FFFF_FFFF)
_INF_BITS = 0x7FF0_0000_0000_0000
_CHUNK = 1 << 17  # entries per chunk of the pass over adjacent sorted keys (1 MiB of int64)


def _rank_argsort(a: np.ndarray) -> np.ndarray:
    """Average ranks by ``np.argsort`` (the reference path: NaN, or more than 2**40 entries)."""
    m = a.size
    order = np.argsort(a)
    sv = a[order]
    new = np.empty(m, dtype=bool)
    new[:1] = True
    np.not_equal(sv[1:], sv[:-1], out=new[1:])
    del sv
    out = np.empty(m, dtype=np.float64)
    if new.all():
        out[order] = np.arange(1, m + 1, dtype=np.float64)
    else:
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], m]
        out[order] = ((starts + ends + 1) / 2.0)[np.cumsum(new) - 1]
    return out


def _monotone_bits(a: np.ndarray) -> tuple[np.ndarray, int, int, bool] | None:
    """int64 keys ordered as the values of float64 ``a``, their min and max, whether a copy.

    Non-negative floats (no sign bit set) are ordered as their bit patterns: ``a`` viewed as
    int64, no copy. Otherwise the usual IEEE transform: negative values get their low 63 bits
    flipped (after ``+ 0.0``, which turns -0.0 into +0.0). None when ``a`` holds NaN.
    """
    bits = a.view(np.int64)
    lo, hi = int(bits.min()), int(bits.max())
    if lo >= 0:
        return None if hi > _INF_BITS else (bits, lo, hi, False)
    if np.isnan(a).any():
        return None
    key = (a + 0.0).view(np.int64)
    flip = key >> 63  # all ones for negative values, else zero
    flip &= _LOW63
    key ^= flip
    return key, int(key.min()), int(key.max()), True


def _rank_numpy(a: np.ndarray) -> np.ndarray:
    """Average ranks of a float64 vector with one ``sort`` of packed keys, no ``argsort``.

    The key trick: each entry becomes one int64 ``(value field << k) | index`` with ``k`` =
    ceil(log2 m) index bits, the value field being the monotone bit pattern of the value minus
    the smallest one, shifted right just enough to fit (``shift`` bits dropped; none when the
    values span few binades). ``np.sort`` of those keys (a vectorized AVX-512 sort, several
    times faster than ``np.argsort``) gives the order in the low bits. Entries whose value
    fields agree are exact ties, or — only when ``shift > 0`` — distinct values that collided
    after the shift; the runs of equal fields that hold distinct values are put in exact order
    by a ``lexsort`` of just those entries. Tie groups then share their mean position (scipy's
    ``rankdata`` "average"), computed on the tied entries only.
    """
    m = a.size
    k = max(1, (m - 1).bit_length())
    mono = _monotone_bits(a) if m > 1 and k <= _MAX_INDEX_BITS else None
    if mono is None:
        return _rank_argsort(a)
    bits, lo, hi, owned = mono
    shift = max(0, (hi - lo).bit_length() + k - 63)  # keys stay in int64's non-negative half
    # the offset in uint64 (mod 2**64): exact even when hi - lo exceeds int64's range
    ub = bits.view(np.uint64)
    key = np.subtract(ub, np.uint64(lo % (1 << 64)), out=ub if owned else None)
    if shift:
        key >>= np.uint64(shift)
    key = key.view(np.int64)
    key <<= k
    # the passes over all entries below go in cache-sized chunks: no full-length temporaries
    chunks = [(c0, min(c0 + _CHUNK, m)) for c0 in range(0, m, _CHUNK)]
    for c0, c1 in chunks:
        key[c0:c1] |= np.arange(c0, c1, dtype=np.int64)  # the index field
    key.sort()
    # same[i]: sorted entries i and i + 1 have equal value fields (xor below 2**k)
    same = np.empty(m - 1, dtype=bool)
    for c0, c1 in chunks:
        c1 = min(c1, m - 1)
        np.less(key[c0 + 1 : c1 + 1] ^ key[c0:c1], 1 << k, out=same[c0:c1])
    key &= (1 << k) - 1
    order = key
    p = np.flatnonzero(same)
    if p.size and shift:  # fields can collide: keep only exact ties, reorder mixed runs
        va, vb = a[order[p]], a[order[p + 1]]
        bad = va != vb
        if bad.any():
            in_run = np.zeros(m, dtype=bool)
            in_run[p] = True
            in_run[p + 1] = True
            members = np.flatnonzero(in_run)
            del in_run
            starts = np.ones(members.size, dtype=bool)
            starts[1:] = ~same[members[1:] - 1]
            run = np.cumsum(starts) - 1
            mixed = np.zeros(int(run[-1]) + 1, dtype=bool)
            mixed[run[np.searchsorted(members, p[bad])]] = True
            pick = mixed[run]
            sub, sub_run = members[pick], run[pick]
            o = order[sub]
            order[sub] = o[np.lexsort((a[o], sub_run))]
            va, vb = a[order[p]], a[order[p + 1]]
        p = p[va == vb]
    del same
    out = np.empty(m, dtype=np.float64)
    for c0, c1 in chunks:  # sorted position j has rank j + 1 ...
        out[order[c0:c1]] = np.arange(c0 + 1, c1 + 1, dtype=np.float64)
    if p.size:  # ... except in tie groups, which share their mean rank
        link = np.zeros(m + 1, dtype=bool)  # link[i]: sorted entries i and i + 1 tie
        link[p] = True
        first, last = p[~link[p - 1]], p[~link[p + 1]] + 1  # chains of links: tie groups
        tied = link[:m].copy()
        tied[1:] |= link[: m - 1]
        members = np.flatnonzero(tied)
        group = np.searchsorted(first, members, side="right") - 1
        out[order[members]] = ((first + last) / 2.0 + 1.0)[group]
    return out


def _ranks(vs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Ranks of several vectors; on CPU in parallel threads (numpy's sort releases the GIL)."""
    if len(vs) > 1 and all(v.device.type == "cpu" for v in vs):
        with ThreadPoolExecutor(min(len(vs), 4)) as pool:
            return list(pool.map(rank, vs))
    return [rank(v) for v in vs]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    num = a @ b.T if a.ndim == 2 else (a * b).sum(-1)
    den = na[:, None] * nb[None, :] if a.ndim == 2 else na * nb
    return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0)


def _centered_second_moment(v: torch.Tensor, subtract_mean: bool) -> torch.Tensor:
    """``G = -½ H D H`` from a condensed RDM (``D`` with zero diagonal)."""
    if subtract_mean:
        v = v - v.mean()
    d = squareform(v)
    g = -0.5 * d
    g = g - g.mean(0, keepdim=True)
    return g - g.mean(1, keepdim=True)


def _tau_a(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's τ_a from scipy's τ_b and the tie counts: ``(C - D) / (m(m-1)/2)``."""
    from neuronatlas._lazy import require

    stats = require("scipy.stats")
    m = a.size
    tot = m * (m - 1) // 2

    def ties(x: np.ndarray) -> int:
        c = np.unique(x, return_counts=True)[1].astype(np.int64)
        return int((c * (c - 1) // 2).sum())

    xt, yt = ties(a), ties(b)
    if xt == tot or yt == tot:
        return 0.0
    tau_b = stats.kendalltau(a, b).statistic
    return float(np.clip(tau_b * np.sqrt(float(tot - xt) * float(tot - yt)) / tot, -1.0, 1.0))


def compare_rdms(rdm1: Any, rdm2: Any, method: Comparison = "cosine") -> torch.Tensor:
    """Similarity of RDMs under ``method`` (see the module docstring for definitions).

    Args:
        rdm1, rdm2: condensed RDM vectors over the same stimuli, or 2-D stacks of them.
        method: ``"cosine"``, ``"corr"``, ``"spearman"``, ``"rho-a"``, ``"tau-a"``,
            ``"cosine_cov"`` or ``"corr_cov"``.

    Returns:
        A 0-d float64 tensor for two vectors; ``(len(rdm1), len(rdm2))`` for stacks.

    Examples:
        >>> import torch
        >>> a, b = torch.tensor([1.0, 2, 3, 4]), torch.tensor([1.0, 4, 9, 2])
        >>> round(float(compare_rdms(a, b, "spearman")), 6)
        0.4
    """
    if method not in COMPARISONS:
        raise CompareError(f"method must be one of {list(COMPARISONS)}; got {method!r}.")
    a, b = check_vectors(rdm1, rdm2)
    single = a.ndim == 1 and b.ndim == 1
    a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    if method in ("cosine_cov", "corr_cov"):
        ga = [_centered_second_moment(v, method == "corr_cov").flatten() for v in a2]
        gb = [_centered_second_moment(v, method == "corr_cov").flatten() for v in b2]
        out = _cosine(torch.stack(ga), torch.stack(gb))
    elif method == "tau-a":
        an, bn = a2.cpu().numpy(), b2.cpu().numpy()
        out = torch.tensor([[_tau_a(x, y) for y in bn] for x in an], dtype=torch.float64)
    elif single and method in ("spearman", "rho-a"):
        out = _rank_correlation(*_ranks([a, b]), method)[None, None]
    else:
        if method in ("spearman", "rho-a"):
            ranked = _ranks([*a2, *b2])
            a2, b2 = torch.stack(ranked[: len(a2)]), torch.stack(ranked[len(a2) :])
        if method in ("corr", "spearman", "rho-a"):
            a2 = a2 - a2.mean(1, keepdim=True)
            b2 = b2 - b2.mean(1, keepdim=True)
        if method == "rho-a":
            m = a2.shape[1]
            out = (a2 @ b2.T) * 12 / (float(m) ** 3 - m)
        else:
            out = _cosine(a2, b2)
    return out[0, 0] if single else out


def _rank_correlation(ra: torch.Tensor, rb: torch.Tensor, method: str) -> torch.Tensor:
    """Spearman / rho-a of two rank vectors from five sums (no centered copies in memory)."""
    m = ra.numel()
    sa, sb = ra.sum(), rb.sum()
    cov = ra @ rb - sa * sb / m
    if method == "rho-a":
        return cov * 12 / (float(m) ** 3 - m)
    va, vb = ra @ ra - sa * sa / m, rb @ rb - sb * sb / m
    den = torch.sqrt(va * vb)
    return cov / den if bool(den > 0) else torch.zeros((), dtype=torch.float64)


def _pool(rdms: torch.Tensor, method: str) -> torch.Tensor:
    """The RDM best under ``method`` for a group of RDMs (rsatoolbox's ``pool_rdm``)."""
    if method in ("cosine", "cosine_cov"):
        return (rdms / rdms.pow(2).mean(1, keepdim=True).sqrt()).mean(0)
    if method in ("corr", "corr_cov"):
        z = rdms - rdms.mean(1, keepdim=True)
        z = z / z.std(1, unbiased=False, keepdim=True)
        m = z.mean(0)
        return m - m.min()
    return torch.stack(_ranks(list(rdms))).mean(0)  # spearman, rho-a, tau-a: mean rank


def noise_ceiling(rdms: Any, method: Comparison = "cosine") -> tuple[float, float]:
    """Lower and upper noise ceiling of a group of subject RDMs (leave one subject out).

    Nili et al., "A toolbox for representational similarity analysis" (2014), as
    rsatoolbox's ``boot_noise_ceiling``: upper = mean over subjects ``s`` of
    ``compare(pool(all), rdm_s)``; lower = mean of ``compare(pool(all but s), rdm_s)``.

    Args:
        rdms: ``(subject, pair)`` condensed RDMs, one per subject, at least 2.
        method: the comparison the model RDMs are scored with.

    Returns:
        ``(lower, upper)``.
    """
    r, _ = check_vectors(rdms)
    if r.ndim != 2 or r.shape[0] < 2:
        raise CompareError(
            f"noise_ceiling needs one RDM per subject, at least 2, as a (subject, pair) stack; "
            f"got shape {tuple(r.shape)}."
        )
    if method not in COMPARISONS:
        raise CompareError(f"method must be one of {list(COMPARISONS)}; got {method!r}.")
    pooled = _pool(r, method)
    upper, lower = [], []
    for s in range(r.shape[0]):
        rest = torch.cat([r[:s], r[s + 1 :]])
        upper.append(float(compare_rdms(pooled, r[s], method)))
        lower.append(float(compare_rdms(_pool(rest, method), r[s], method)))
    return float(np.mean(lower)), float(np.mean(upper))
