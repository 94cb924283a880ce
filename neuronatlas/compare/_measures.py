"""The similarity measures :func:`compare_atlases` runs, as small entries of a registry.

Each measure turns a representation into a *state* once (a Gram matrix, an RDM, the centered
features) and scores two states; a permutation or a bootstrap draw of stimuli is applied to
the states, so the test costs one comparison per draw, not a new Gram or RDM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from neuronatlas.compare import _cca, _cka, _rsa, _shape, _tda
from neuronatlas.compare._validate import CompareError, as_matrix
from neuronatlas.errors import closest

__all__ = ["MEASURES", "Measure", "get_measure"]


@dataclass(frozen=True)
class Measure:
    """A similarity measure between two ``(stimulus, unit)`` representations.

    Attributes:
        name: registry key. description: one line for tables and pages.
        prepare: ``prepare(x, **options) -> state``.
        score: ``score(state_a, state_b, **options) -> float``.
        take: ``take(state, idx) -> state`` for stimuli ``idx`` (a permutation or a draw with
            replacement).
        similarity: True when larger means more similar (False for distances).
        symmetric: ``score(a, b) == score(b, a)``.
        options: the options the measure accepts, with their defaults.
        interval: bootstrap interval (``"percentile"`` where a draw's repeated stimuli are left
            out of the statistic, as RSA leaves out pairs of copies; ``"normal"`` otherwise).
    """

    name: str
    description: str
    prepare: Callable[..., Any]
    score: Callable[..., float]
    take: Callable[[Any, torch.Tensor], Any]
    similarity: bool = True
    symmetric: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    interval: str = "normal"


def _take_square(m: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    idx = idx.to(m.device)
    return m[idx][:, idx]


def _take_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return x[idx.to(x.device)]


# --- CKA ------------------------------------------------------------------------------------


@dataclass
class _GramState:
    """A Gram matrix and its centered form. Centering commutes with reordering the stimuli, so
    a permutation reorders the centered Gram; a bootstrap draw (repeats) centers again."""

    raw: torch.Tensor | None  # None in a permuted copy (only scored, never drawn from)
    centered: torch.Tensor
    norm: torch.Tensor
    debiased: bool

    @classmethod
    def of(cls, raw: torch.Tensor, debiased: bool) -> _GramState:
        c = _cka.center_gram(raw, debiased=debiased)
        return cls(raw, c, c.norm(), debiased)

    def take(self, idx: torch.Tensor) -> _GramState:
        idx = idx.to(self.raw.device)
        if torch.unique(idx).numel() == idx.numel():
            return _GramState(None, self.centered[idx][:, idx], self.norm, self.debiased)
        if self.raw is None:
            raise CompareError("Internal: a bootstrap draw from a permuted Gram state.")
        return _GramState.of(self.raw[idx][:, idx], self.debiased)


def _cka_measure(name: str, kernel: str, debiased: bool, description: str) -> Measure:
    def prepare(x: Any, threshold: float = 1.0) -> _GramState:
        return _GramState.of(_cka.gram(x, kernel, threshold=threshold), debiased)  # type: ignore[arg-type]

    def score(k: _GramState, l: _GramState, threshold: float = 1.0) -> float:  # noqa: E741
        den = k.norm * l.norm.to(k.norm.device)
        if not bool(den > 0):
            return 0.0
        return float((k.centered * l.centered.to(k.centered.device)).sum() / den)

    return Measure(name, description, prepare, score, lambda s, i: s.take(i),
                   options={"threshold": 1.0} if kernel == "rbf" else {})  # fmt: skip


# --- RSA ------------------------------------------------------------------------------------


@dataclass
class _RDMState:
    """A square RDM (and its square of average ranks, for rank comparisons), plus the stimulus
    labels of a bootstrap draw: pairs of a stimulus with a copy of itself are left out, as in
    rsatoolbox's pattern bootstrap. A permutation reorders the ranks too (ranks of reordered
    entries are the reordered ranks); a draw with repeats ranks its pairs again."""

    square: torch.Tensor
    ranks: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def condensed(self, m: torch.Tensor | None = None) -> torch.Tensor:
        m = self.square if m is None else m
        n = m.shape[0]
        iu = torch.triu_indices(n, n, 1, device=m.device)
        v = m[iu[0], iu[1]]
        if self.labels is not None:
            lab = self.labels.to(m.device)
            v = v[lab[iu[0]] != lab[iu[1]]]
        return v


_RANKED = ("spearman", "rho-a")


def _rdm_prepare(x: Any, rdm: str = "correlation", comparison: str = "spearman") -> _RDMState:
    v = _rsa.rdm(x, rdm)  # type: ignore[arg-type]
    ranks = _rsa.squareform(_rsa.rank(v)) if comparison in _RANKED else None
    return _RDMState(_rsa.squareform(v), ranks)


def _rdm_take(s: _RDMState, idx: torch.Tensor) -> _RDMState:
    idx = idx.to(s.square.device)
    if torch.unique(idx).numel() == idx.numel():  # a permutation
        ranks = s.ranks[idx][:, idx] if s.ranks is not None else None
        return _RDMState(s.square[idx][:, idx], ranks, None)
    labels = idx if s.labels is None else s.labels[idx]
    return _RDMState(s.square[idx][:, idx], None, labels)


def _rsa_score(
    a: _RDMState, b: _RDMState, rdm: str = "correlation", comparison: str = "spearman"
) -> float:
    if comparison in _RANKED and a.ranks is not None and b.ranks is not None:
        ra, rb = a.condensed(a.ranks), b.condensed(b.ranks.to(a.ranks.device))
        ra, rb = ra - ra.mean(), rb - rb.mean()
        if comparison == "rho-a":
            m = ra.numel()
            return float((ra * rb).sum() * 12 / (float(m) ** 3 - m))
        return float((ra * rb).sum() / (ra.norm() * rb.norm()))
    va, vb = a.condensed(), b.condensed().to(a.square.device)
    return float(_rsa.compare_rdms(va, vb, comparison))  # type: ignore[arg-type]


def _trsa_prepare(
    x: Any, rdm: str = "correlation", comparison: str = "cosine", low: float = 0.0, up: float = 1.0
) -> _RDMState:
    return _RDMState(_rsa.squareform(_rsa.rdm(x, rdm)))  # type: ignore[arg-type]


def _trsa_score(
    a: _RDMState,
    b: _RDMState,
    rdm: str = "correlation",
    comparison: str = "cosine",
    low: float = 0.0,
    up: float = 1.0,
) -> float:
    va, vb = a.condensed(), b.condensed().to(a.square.device)
    ga = _tda.geotopological_transform(va, low, up)
    gb = _tda.geotopological_transform(vb, low, up)
    return float(_rsa.compare_rdms(ga, gb, comparison))  # type: ignore[arg-type]


# --- shape metrics and CCA -------------------------------------------------------------------


def _features(x: Any, **_: Any) -> torch.Tensor:
    return as_matrix(x, "x")


def _shape_score(
    a: torch.Tensor, b: torch.Tensor, alpha: float = 1.0, score: str = "angular"
) -> float:
    return float(_shape.shape_distance(a, b.to(a.device), alpha=alpha, score=score))  # type: ignore[arg-type]


def _svcca_score(a: torch.Tensor, b: torch.Tensor, keep: float | int = 0.99) -> float:
    return float(_cca.svcca(a, b.to(a.device), keep=keep))


def _cca_score(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(_cca.canonical_correlations(a, b.to(a.device)).mean())


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in [
        _cka_measure("cka", "linear", False, "linear CKA (biased HSIC)"),
        _cka_measure("cka-debiased", "linear", True, "linear CKA (debiased HSIC)"),
        _cka_measure("cka-rbf", "rbf", False, "RBF CKA (biased HSIC, σ from the median distance)"),
        _cka_measure("cka-rbf-debiased", "rbf", True, "RBF CKA (debiased HSIC)"),
        Measure("rsa", "RSA: RDM comparison", _rdm_prepare, _rsa_score, _rdm_take,
                options={"rdm": "correlation", "comparison": "spearman"}, interval="percentile"),
        Measure("trsa", "topological RSA: geo-topological RDMs compared", _trsa_prepare,
                _trsa_score, _rdm_take,
                options={"rdm": "correlation", "comparison": "cosine", "low": 0.0, "up": 1.0},
                interval="percentile"),
        Measure("shape", "generalized shape distance (angular, radians)", _features,
                _shape_score, _take_rows, similarity=False,
                options={"alpha": 1.0, "score": "angular"}),
        Measure("svcca", "SVCCA: mean canonical correlation after SVD reduction", _features,
                _svcca_score, _take_rows, options={"keep": 0.99}),
        Measure("cca", "mean canonical correlation", _features, _cca_score, _take_rows),
    ]
}  # fmt: skip


def get_measure(name: str) -> Measure:
    """The measure ``name``; :class:`CompareError` listing the known ones otherwise."""
    if name not in MEASURES:
        near = closest(name, MEASURES)
        raise CompareError(
            f"Unknown measure {name!r}."
            + (f" Did you mean {near[0]!r}?" if near else "")
            + f" Known: {', '.join(MEASURES)}."
        )
    return MEASURES[name]


def check_options(measure: Measure, options: dict[str, Any]) -> dict[str, Any]:
    """The measure's defaults updated with ``options``; unknown options are an error."""
    unknown = sorted(set(options) - set(measure.options))
    if unknown:
        raise CompareError(
            f"Measure {measure.name!r} takes the options {sorted(measure.options) or 'none'}; "
            f"got unknown {unknown}."
        )
    merged = {**measure.options, **options}
    if measure.name in ("rsa", "trsa"):
        if merged["rdm"] not in _rsa.RDM_METRICS:
            raise CompareError(
                f"rdm must be one of {list(_rsa.RDM_METRICS)}; got {merged['rdm']!r}."
            )
        if merged["comparison"] not in _rsa.COMPARISONS:
            raise CompareError(
                f"comparison must be one of {list(_rsa.COMPARISONS)}; got {merged['comparison']!r}."
            )
    return merged
