"""What an atlas build needs from the taxonomy: per-site statistics and the labelled table.

- :class:`SiteStats`: :class:`~neuronatlas.stats.UnitStats` and :class:`TaxonomyStats` of one
  site behind the accumulator interface of ``UnitStats`` (a drop-in for it in a build).
- :func:`annotate_units`: after the pass, names the token ids, adds the ``label_*`` columns
  and, for models with an unembedding, the vocabulary projection of the MLP sites.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from neuronatlas.errors import AccumulatorError
from neuronatlas.sites import Site
from neuronatlas.stats import SiteBatch, UnitStats
from neuronatlas.stats._common import check_state, header
from neuronatlas.units._labels import TaxonomyError, label_units
from neuronatlas.units._taxonomy_stats import TaxonomyStats
from neuronatlas.units._vocab import vocab_projection

__all__ = ["SiteStats", "annotate_units"]


class SiteStats:
    """``UnitStats`` and ``TaxonomyStats`` of one site, updated, merged and saved together.

    Same interface as :class:`~neuronatlas.stats.UnitStats` (``update``, ``merge``, ``to``,
    ``state_dict`` / ``from_state_dict``, ``result``, ``exemplars``, ``n_units``), so a build
    that keeps one ``UnitStats`` per site can keep one ``SiteStats`` instead; ``result()``
    returns the columns of both.

    Args:
        n_units: units of the site.
        taxonomy: also run :class:`TaxonomyStats` (False: exactly ``UnitStats``).
        taxonomy_options: keyword arguments of :class:`TaxonomyStats`; its ``threshold`` and
            ``device`` default to those given for ``UnitStats``.
        **unit_stats: keyword arguments of :class:`~neuronatlas.stats.UnitStats`.

    Examples:
        >>> import torch
        >>> from neuronatlas.stats import SiteBatch
        >>> s = SiteStats(3, top_k=2, context=0, taxonomy_options={"max_pos": 8})
        >>> s.update(SiteBatch.from_values(torch.randn(2, 5, 3)))
        >>> {"mean", "pos_eta2", "absmax"} <= set(s.result())
        True
    """

    def __init__(
        self,
        n_units: int,
        *,
        taxonomy: bool = True,
        taxonomy_options: Mapping[str, Any] | None = None,
        **unit_stats: Any,
    ):
        self.stats = UnitStats(n_units, **unit_stats)
        opts = {"threshold": unit_stats.get("threshold", 0.0), "device": unit_stats.get("device")}
        opts.update(taxonomy_options or {})
        self.taxonomy = TaxonomyStats(n_units, **opts) if taxonomy else None

    @property
    def n_units(self) -> int:
        return self.stats.n_units

    @property
    def device(self) -> torch.device:
        return self.stats.device

    def __repr__(self) -> str:
        return f"SiteStats({self.stats!r}, {self.taxonomy!r})"

    def update(self, batch: SiteBatch) -> None:
        """Fold one batch of this site into both."""
        self.stats.update(batch)
        if self.taxonomy is not None:
            self.taxonomy.update(batch)

    def merge(self, other: SiteStats) -> SiteStats:
        """Fold another shard of the same site in; returns ``self``."""
        if not isinstance(other, SiteStats):
            raise AccumulatorError(
                f"SiteStats.merge expects another SiteStats; got {type(other).__name__}."
            )
        if (self.taxonomy is None) != (other.taxonomy is None):
            raise AccumulatorError(
                "Cannot merge SiteStats with and without the taxonomy; create every shard's "
                "statistics with the same taxonomy setting."
            )
        self.stats.merge(other.stats)
        if self.taxonomy is not None:
            self.taxonomy.merge(other.taxonomy)  # type: ignore[arg-type]
        return self

    def to(self, device: torch.device | str) -> SiteStats:
        """Move all state to ``device`` (in place); returns ``self``."""
        self.stats.to(device)
        if self.taxonomy is not None:
            self.taxonomy.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Plain CPU tensors and numbers; ``torch.load(..., weights_only=True)`` reads it."""
        state = header("SiteStats", self.n_units)
        state["stats"] = self.stats.state_dict()
        state["taxonomy"] = None if self.taxonomy is None else self.taxonomy.state_dict()
        return state

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], *, device: torch.device | str | None = None
    ) -> SiteStats:
        """Rebuild the statistics saved by :meth:`state_dict`, on ``device`` (default CPU)."""
        check_state(state, "SiteStats")
        self = cls.__new__(cls)
        self.stats = UnitStats.from_state_dict(state["stats"], device=device)
        tax = state["taxonomy"]
        self.taxonomy = None if tax is None else TaxonomyStats.from_state_dict(tax, device=device)
        return self

    def result(self) -> dict[str, np.ndarray]:
        """The columns of ``UnitStats.result()`` followed by those of ``TaxonomyStats``."""
        cols = dict(self.stats.result())
        if self.taxonomy is not None:
            cols.update(self.taxonomy.result())
        return cols

    def exemplars(self) -> dict[str, np.ndarray]:
        """The top-k exemplars (:meth:`UnitStats.exemplars`)."""
        return self.stats.exemplars()


def annotate_units(
    units: pd.DataFrame,
    *,
    model: nn.Module | None = None,
    sites: Iterable[Site] = (),
    tokenizer: Any = None,
    thresholds: Mapping[str, float] | None = None,
    k: int = 10,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Finish a units table: token strings, ``label_*`` columns, vocabulary projections.

    - ``tok`` and ``bigram`` (``"prev cur"``): the strings of ``tok_id`` and of
      ``bigram_prev_id, bigram_id``, when a tokenizer with ``convert_ids_to_tokens`` is given;
    - :func:`label_units` (with ``thresholds``);
    - for each site of kind ``mlp`` among ``sites``, :func:`vocab_projection` with ``k`` tokens
      (list columns ``vocab_top``, ``vocab_top_id``, ``vocab_top_logit``, ``vocab_bottom``, ...),
      when ``model`` has an unembedding; otherwise the reason is recorded and nothing added.

    Args:
        units: the units table (one row per ``site, unit``).
        model: the mapped model (for the vocabulary projection).
        sites: the mapped sites (:class:`~neuronatlas.sites.Site`).
        tokenizer: the model's tokenizer, or None.
        thresholds: overrides of the label thresholds.
        k: tokens per side of the vocabulary projection.

    Returns:
        ``(table, info)``: ``info`` is :func:`label_units`'s dict plus ``"vocab_projection"``
        (the sites projected, or why none was).

    Examples:
        >>> import pandas as pd
        >>> table, info = annotate_units(pd.DataFrame({"site": ["s"], "unit": [0],
        ...                                             "count": [5], "max": [0.0]}))
        >>> bool(table.label_dead[0]), info["vocab_projection"]
        (True, 'no model given')
    """
    out = units.copy()
    convert = getattr(tokenizer, "convert_ids_to_tokens", None)
    if callable(convert) and {"tok_id", "bigram_id", "bigram_prev_id"} <= set(out.columns):
        ids = np.unique(out[["tok_id", "bigram_id", "bigram_prev_id"]].to_numpy(np.int64).ravel())
        ids = ids[ids >= 0]
        names = dict(zip(ids.tolist(), map(str, convert(ids.tolist())), strict=True))
        out["tok"] = out["tok_id"].map(names)
        prev = out["bigram_prev_id"].map(names).fillna("")
        out["bigram"] = (prev + " " + out["bigram_id"].map(names).fillna("")).where(
            out["bigram_id"] >= 0
        )
    out, info = label_units(out, thresholds=thresholds)
    mlp = [s for s in sites if s.kind == "mlp"]
    if model is None:
        info["vocab_projection"] = "no model given"
    elif not mlp:
        info["vocab_projection"] = "no mlp site"
    else:
        try:
            tables = [vocab_projection(model, s, tokenizer, k=k) for s in mlp]
        except TaxonomyError as exc:
            info["vocab_projection"] = f"skipped: {exc}"
        else:
            out = out.merge(pd.concat(tables, ignore_index=True), on=["site", "unit"], how="left")
            info["vocab_projection"] = [s.name for s in mlp]
    return out, info
