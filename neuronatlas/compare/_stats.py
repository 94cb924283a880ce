"""Inference over stimuli shared by every similarity measure: permutation tests, bootstrap CIs.

Both resample *stimuli* (the rows shared by the two representations), so they answer "would
another draw of stimuli give the same similarity?".

- Permutation test: the statistic is recomputed with the second representation's stimuli
  shuffled (``n_perm`` random permutations). The p-value is
  ``(1 + #{null ≥ observed}) / (1 + n_perm)`` — Phipson & Smyth, "Permutation P-values Should
  Never Be Zero" (2010) — so it is exact (valid at every level) for exchangeable stimuli.
- Bootstrap: stimuli are drawn with replacement ``n_boot`` times — Efron & Tibshirani, "An
  Introduction to the Bootstrap" (1993). The ``percentile`` interval is ``[q_lo, q_hi]``, the
  ``(1-level)/2`` and ``(1+level)/2`` quantiles of the bootstrap values (``np.quantile``,
  linear interpolation; §13.3); the ``normal`` interval is ``θ̂ ± z_{(1+level)/2} · se``, with
  ``se`` the standard deviation of the bootstrap values (§13.2). A draw repeats stimuli (about
  37% of them are missing); statistics that leave copies out (RSA drops the pairs of a stimulus
  with its own copy) use the percentile interval; statistics whose value is pushed up by
  repeated rows (biased CKA, shape and CCA measures: their small-sample bias grows as the
  number of distinct stimuli falls) use the normal interval, which takes only the spread of
  the bootstrap values, not their shifted center. Non-finite bootstrap values are counted and
  left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

from neuronatlas.compare._validate import CompareError

__all__ = ["BootstrapResult", "PermutationResult", "bootstrap_ci", "permutation_test"]

Statistic = Callable[[torch.Tensor], float]


@dataclass(frozen=True)
class PermutationResult:
    """Result of :func:`permutation_test`.

    Attributes:
        observed: the statistic on the data as given.
        p: one-sided p-value (``alternative="greater"``: large values are evidence).
        null: ``(n_perm,)`` the statistic under each permutation.
    """

    observed: float
    p: float
    null: np.ndarray


@dataclass(frozen=True)
class BootstrapResult:
    """Result of :func:`bootstrap_ci`: the percentile interval and the samples it came from.

    Attributes:
        low, high: interval bounds. level: its nominal coverage.
        samples: ``(n_boot,)`` bootstrap values (non-finite ones dropped). n_nonfinite: dropped.
    """

    low: float
    high: float
    level: float
    samples: np.ndarray
    n_nonfinite: int


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def _check_count(value: int, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise CompareError(f"{name} must be a positive int; got {value!r}.")
    return int(value)


def permutation_test(
    statistic: Statistic,
    n: int,
    n_perm: int,
    *,
    observed: float | None = None,
    alternative: str = "greater",
    seed: int = 0,
) -> PermutationResult:
    """Permutation test of a statistic of two representations over ``n`` shared stimuli.

    Args:
        statistic: ``f(perm)`` = the statistic with the second representation's stimuli
            reordered by ``perm`` (a ``(n,)`` int64 permutation; ``arange(n)`` = as given).
        n: number of stimuli.
        n_perm: number of random permutations.
        observed: the statistic as given, if already computed.
        alternative: ``"greater"`` (similarity: large is evidence), ``"less"`` (distance).
        seed: seed of the permutations.

    Returns:
        :class:`PermutationResult`.

    Examples:
        >>> import torch
        >>> x = torch.arange(20.0)
        >>> res = permutation_test(lambda p: float(torch.corrcoef(torch.stack([x, x[p]]))[0, 1]),
        ...                        20, 99)
        >>> res.p
        0.01
    """
    n_perm = _check_count(n_perm, "n_perm")
    if alternative not in ("greater", "less"):
        raise CompareError(f"alternative must be 'greater' or 'less'; got {alternative!r}.")
    obs = float(statistic(torch.arange(n))) if observed is None else float(observed)
    g = _generator(seed)
    null = np.array([float(statistic(torch.randperm(n, generator=g))) for _ in range(n_perm)])
    if alternative == "greater":
        hits = int(np.sum(null >= obs - 1e-12 * max(1.0, abs(obs))))
    else:
        hits = int(np.sum(null <= obs + 1e-12 * max(1.0, abs(obs))))
    return PermutationResult(observed=obs, p=(1 + hits) / (1 + n_perm), null=null)


def bootstrap_ci(
    statistic: Statistic,
    n: int,
    n_boot: int,
    *,
    level: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
    observed: float | None = None,
) -> BootstrapResult:
    """Percentile bootstrap confidence interval of a statistic over ``n`` stimuli.

    Args:
        statistic: ``f(idx)`` = the statistic on the stimuli ``idx`` (a ``(n,)`` int64 draw
            with replacement), the same draw for both representations.
        n: number of stimuli. n_boot: bootstrap samples. level: coverage, in (0, 1).
        seed: seed of the draws.
        method: ``"percentile"`` or ``"normal"`` (see the module docstring).
        observed: the estimate on all stimuli (``normal`` needs it; computed when None).

    Returns:
        :class:`BootstrapResult`; ``low``/``high`` are NaN when no sample was finite.
    """
    n_boot = _check_count(n_boot, "n_boot")
    if not 0 < level < 1:
        raise CompareError(f"level must be in (0, 1); got {level!r}.")
    if method not in ("percentile", "normal"):
        raise CompareError(f"method must be 'percentile' or 'normal'; got {method!r}.")
    if method == "normal" and observed is None:
        observed = float(statistic(torch.arange(n)))
    g = _generator(seed)
    vals = np.array(
        [float(statistic(torch.randint(0, n, (n,), generator=g))) for _ in range(n_boot)]
    )
    ok = np.isfinite(vals)
    samples = vals[ok]
    if samples.size == 0:
        return BootstrapResult(np.nan, np.nan, level, samples, int((~ok).sum()))
    if method == "normal":
        half = NormalDist().inv_cdf((1 + level) / 2) * float(np.std(samples, ddof=1))
        return BootstrapResult(observed - half, observed + half, level, samples, int((~ok).sum()))
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapResult(float(lo), float(hi), level, samples, int((~ok).sum()))
