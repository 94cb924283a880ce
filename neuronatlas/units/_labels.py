"""Labels of the unit taxonomy: booleans computed from the units table, with their scores.

Each label reads existing score columns of ``units.parquet`` (from
:class:`~neuronatlas.stats.UnitStats`, :class:`~neuronatlas.units.TaxonomyStats` and
:func:`~neuronatlas.units.unit_correlations`) and compares them with documented thresholds.
Definitions, sources and defaults are in ``docs/taxonomy.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from neuronatlas.errors import NeuronAtlasError, closest

__all__ = [
    "DEFAULT_THRESHOLDS",
    "LABELS",
    "LabelSpec",
    "TaxonomyError",
    "label_units",
    "layer_density",
]


class TaxonomyError(NeuronAtlasError, ValueError):
    """Thresholds or tables the taxonomy cannot use (unknown names, bad values, wrong shape)."""


#: Default thresholds of :func:`label_units` (see docs/taxonomy.md for where each comes from).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "dead_max": 0.0,
    "token_f1": 0.5,
    "token_min_fires": 10,
    "bigram_f1": 0.5,
    "bigram_gain": 0.2,
    "positional_eta2": 0.5,
    "massive_abs": 100.0,
    "massive_ratio": 1000.0,
    "universal_excess": 0.5,
}

_VOITA = "Voita, Ferrando, Nalmpantis, 'Neurons in Large Language Models: Dead, N-gram, Positional' (2023)"
_SUN = "Sun, Chen, Kolter, Liu, 'Massive Activations in Large Language Models' (2024)"
_GURNEE = "Gurnee et al., 'Universal Neurons in GPT2 Language Models' (2024)"


@dataclass(frozen=True)
class LabelSpec:
    """One label: the columns it reads, its score column, its rule and where it comes from."""

    name: str
    score: str
    needs: tuple[str, ...]
    thresholds: tuple[str, ...]
    rule: str
    source: str
    fn: Callable[[pd.DataFrame, Mapping[str, float]], np.ndarray]

    @property
    def column(self) -> str:
        return f"label_{self.name}"


def _col(units: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(units[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _dead(u: pd.DataFrame, t: Mapping[str, float]) -> np.ndarray:
    return (_col(u, "count") > 0) & (_col(u, "max") <= t["dead_max"])


def _token(u: pd.DataFrame, t: Mapping[str, float]) -> np.ndarray:
    return (_col(u, "tok_f1") >= t["token_f1"]) & (_col(u, "fire_count") >= t["token_min_fires"])


def _bigram(u: pd.DataFrame, t: Mapping[str, float]) -> np.ndarray:
    f1, tok = _col(u, "bigram_f1"), _col(u, "tok_f1")
    return (
        (f1 >= t["bigram_f1"])
        & (f1 - tok >= t["bigram_gain"])
        & (_col(u, "fire_count") >= t["token_min_fires"])
    )


def _positional(u: pd.DataFrame, t: Mapping[str, float]) -> np.ndarray:
    return _col(u, "pos_eta2") >= t["positional_eta2"]


def _massive(u: pd.DataFrame, t: Mapping[str, float]) -> np.ndarray:
    return (_col(u, "absmax") > t["massive_abs"]) & (_col(u, "massive_ratio") >= t["massive_ratio"])


def _universal(u: pd.DataFrame, t: Mapping[str, float]) -> np.ndarray:
    return _col(u, "universal_excess") > t["universal_excess"]


#: The labels :func:`label_units` knows, in the order their columns are added.
LABELS: tuple[LabelSpec, ...] = (
    LabelSpec(
        "dead", "max", ("count", "max"), ("dead_max",),
        "count > 0 and max <= {dead_max}: never active above {dead_max} on the corpus", _VOITA, _dead,
    ),
    LabelSpec(
        "token", "tok_f1", ("tok_f1", "fire_count"), ("token_f1", "token_min_fires"),
        "tok_f1 >= {token_f1} and fire_count >= {token_min_fires}: the current token predicts "
        "firing (x > threshold) with F1 >= {token_f1}", _VOITA, _token,
    ),
    LabelSpec(
        "bigram", "bigram_f1", ("bigram_f1", "tok_f1", "fire_count"),
        ("bigram_f1", "bigram_gain", "token_min_fires"),
        "bigram_f1 >= {bigram_f1}, bigram_f1 - tok_f1 >= {bigram_gain} and fire_count >= "
        "{token_min_fires}: the (previous, current) token pair predicts firing, better than "
        "the current token alone", _VOITA, _bigram,
    ),
    LabelSpec(
        "positional", "pos_eta2", ("pos_eta2",), ("positional_eta2",),
        "pos_eta2 >= {positional_eta2}: position explains at least {positional_eta2} of the "
        "variance (R² of a position-only model)", _VOITA, _positional,
    ),
    LabelSpec(
        "massive", "massive_ratio", ("absmax", "massive_ratio"), ("massive_abs", "massive_ratio"),
        "absmax > {massive_abs} and massive_ratio >= {massive_ratio}: a magnitude above "
        "{massive_abs} and at least {massive_ratio} times the site's median |x|", _SUN, _massive,
    ),
    LabelSpec(
        "universal", "universal_excess", ("universal_excess",), ("universal_excess",),
        "universal_excess > {universal_excess}: max correlation with the other model's units "
        "exceeds the randomly rotated baseline by more than {universal_excess}", _GURNEE,
        _universal,
    ),
)  # fmt: skip


def _resolve_thresholds(thresholds: Mapping[str, Any] | None) -> dict[str, float]:
    used = dict(DEFAULT_THRESHOLDS)
    if thresholds is None:
        return used
    if not isinstance(thresholds, Mapping):
        raise TaxonomyError(
            f"thresholds must be a dict of threshold names to numbers; got "
            f"{type(thresholds).__name__}. Known names: {', '.join(DEFAULT_THRESHOLDS)}."
        )
    for key, value in thresholds.items():
        if key not in DEFAULT_THRESHOLDS:
            near = closest(str(key), DEFAULT_THRESHOLDS)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise TaxonomyError(
                f"Unknown threshold {key!r}.{hint} Known thresholds: "
                f"{', '.join(DEFAULT_THRESHOLDS)}."
            )
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        )
        if not ok or not np.isfinite(float(value)):
            raise TaxonomyError(
                f"Threshold {key!r} must be a finite number; got {value!r} "
                f"(default {DEFAULT_THRESHOLDS[key]})."
            )
        used[key] = float(value)
    return used


def label_units(
    units: pd.DataFrame, *, thresholds: Mapping[str, float] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Add the taxonomy's ``label_<name>`` columns (and ``layer_density``) to a units table.

    A label is computed when its score columns are present (see :data:`LABELS`), and left out
    otherwise (listed under ``"skipped"``). A unit whose score is NaN (no data, a constant
    unit, no token ids) is not labelled. Labels may overlap: a detector of a token that always
    sits at position 0 is both ``token`` and ``positional``.

    Args:
        units: one row per unit, e.g. ``atlas.units`` or ``survey_units(...).units``.
        thresholds: overrides of :data:`DEFAULT_THRESHOLDS`, by name.

    Returns:
        ``(table, info)``: a copy of ``units`` with the label columns, and a JSON-able dict
        ``{"thresholds": {...}, "labels": {column: {"score", "rule", "source"}}, "skipped":
        {column: reason}}`` to store with the atlas.

    Raises:
        TaxonomyError: ``units`` is not a DataFrame, or an unknown threshold name or a
            non-numeric value was given.

    Examples:
        >>> import pandas as pd
        >>> units = pd.DataFrame({"count": [10, 10], "max": [0.0, 2.5], "pos_eta2": [0.0, 0.9]})
        >>> table, info = label_units(units)
        >>> table["label_dead"].tolist(), table["label_positional"].tolist()
        ([True, False], [False, True])
        >>> info["labels"]["label_positional"]["score"], sorted(info["skipped"])[:1]
        ('pos_eta2', ['label_bigram'])
    """
    if not isinstance(units, pd.DataFrame):
        raise TaxonomyError(
            f"label_units expects a pandas DataFrame with one row per unit; got "
            f"{type(units).__name__}. Use atlas.units or pd.read_parquet('.../units.parquet')."
        )
    used = _resolve_thresholds(thresholds)
    out = units.copy()
    info: dict[str, Any] = {"thresholds": used, "labels": {}, "skipped": {}}
    for spec in LABELS:
        missing = [c for c in spec.needs if c not in out.columns]
        if missing:
            info["skipped"][spec.column] = f"missing columns: {', '.join(missing)}"
            continue
        with np.errstate(invalid="ignore"):
            out[spec.column] = np.asarray(spec.fn(out, used), dtype=bool)
        info["labels"][spec.column] = {
            "score": spec.score,
            "rule": spec.rule.format(**{k: _fmt(used[k]) for k in spec.thresholds}),
            "thresholds": {k: used[k] for k in spec.thresholds},
            "source": spec.source,
        }
    if {"site", "frac_active"} <= set(out.columns):
        out["layer_density"] = out.groupby("site", sort=False)["frac_active"].transform("mean")
    return out, info


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def layer_density(units: pd.DataFrame) -> pd.DataFrame:
    """Activation density per site: the mean fraction of active units, as "The Lazy Neuron
    Phenomenon: On Emergence of Activation Sparsity in Transformers" (Li et al., 2022) reports it.

    ``density`` is the mean of ``frac_active`` over the site's units, which equals the fraction
    of the site's ``(position, unit)`` activations that are > 0 (every unit sees the same
    positions). For ReLU sites this is the paper's fraction of nonzero entries.

    Args:
        units: a units table with ``site`` and ``frac_active`` (``layer`` and ``label_dead``
            are used when present).

    Returns:
        One row per site, in table order: ``site, layer, n_units, density`` and, with labels,
        ``frac_dead``.

    Raises:
        TaxonomyError: the table lacks ``site`` or ``frac_active``.

    Examples:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"site": ["a", "a", "b"], "layer": [0, 0, 1],
        ...                   "frac_active": [0.1, 0.3, 0.5]})
        >>> layer_density(t)[["site", "n_units", "density"]].values.tolist()
        [['a', 2, 0.2], ['b', 1, 0.5]]
    """
    missing = [c for c in ("site", "frac_active") if c not in getattr(units, "columns", ())]
    if missing:
        raise TaxonomyError(
            f"layer_density needs a units table with columns site and frac_active; missing "
            f"{', '.join(missing)}."
        )
    agg: dict[str, Any] = {
        "n_units": ("frac_active", "size"),
        "density": ("frac_active", "mean"),
    }
    if "layer" in units.columns:
        agg["layer"] = ("layer", "first")
    if "label_dead" in units.columns:
        agg["frac_dead"] = ("label_dead", "mean")
    out = units.groupby("site", sort=False).agg(**agg).reset_index()
    front = ["site", "layer"] if "layer" in out.columns else ["site"]
    return out[front + [c for c in out.columns if c not in front]]
