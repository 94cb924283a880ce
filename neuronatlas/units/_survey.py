"""One in-memory pass of a model over batches: the units table of an atlas, without writing one.

:func:`survey_units` runs the same accumulators as ``build_atlas`` (plus
:class:`~neuronatlas.units.TaxonomyStats`) and returns pandas tables, for experiments on small
corpora and for tests. Its token table grows with the corpus; map large corpora with
``build_atlas``, which streams everything to disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from neuronatlas.sites import Site, resolve_sites
from neuronatlas.stats import SiteBatch, UnitStats
from neuronatlas.units._batches import as_batches
from neuronatlas.units._labels import TaxonomyError
from neuronatlas.units._taxonomy_stats import TaxonomyStats

__all__ = ["UnitSurvey", "survey_units"]


@dataclass
class UnitSurvey:
    """Tables of one :func:`survey_units` pass.

    Attributes:
        units: one row per unit: ``site, layer, unit``, the :class:`~neuronatlas.stats.UnitStats`
            columns, the :class:`~neuronatlas.units.TaxonomyStats` columns, ``top_token`` and,
            when token strings are known, ``tok`` / ``bigram`` (the strings of ``tok_id`` and
            of ``bigram_prev_id, bigram_id``).
        exemplars: ``site, unit, rank, activation, doc, pos, token_id, token, ctx_start,
            ctx_acts`` as in ``exemplars.parquet``.
        tokens: ``doc, pos, token_id, token`` of every valid position (empty without tokens).
    """

    units: pd.DataFrame
    exemplars: pd.DataFrame
    tokens: pd.DataFrame


def survey_units(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    sites: str | Sequence[str | Site] = "mlp",
    tokenizer: Any = None,
    top_k: int = 20,
    context: int = 10,
    threshold: float = 0.0,
    quantiles: bool = False,
    taxonomy: bool = True,
    taxonomy_options: Mapping[str, Any] | None = None,
) -> UnitSurvey:
    """Record ``model`` over ``batches`` and return the per-unit statistics as tables.

    Args:
        model: any ``nn.Module`` (in eval mode; it is run under ``torch.inference_mode``).
        batches: :class:`~neuronatlas.data.Batch` es (``text_batches``, ``tensor_batches``) or
            model inputs that ``tensor_batches`` accepts (tensors, dicts with ``input_ids``).
        sites: site spec (see ``docs/sites.md``); attention sites are not unit sites.
        tokenizer: turns token ids into strings when the batches carry ids but no windows.
        top_k, context, threshold, quantiles: as for :class:`~neuronatlas.stats.UnitStats`.
        taxonomy: also run :class:`~neuronatlas.units.TaxonomyStats` (its ``threshold`` is
            this one unless ``taxonomy_options`` says otherwise).
        taxonomy_options: keyword arguments of :class:`~neuronatlas.units.TaxonomyStats`.

    Returns:
        :class:`UnitSurvey`.

    Raises:
        TaxonomyError: attention sites, or no batch at all.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> survey = survey_units(model, [torch.randn(16, 4)], sites="1", top_k=2, context=0)
        >>> survey.units.shape[0], "pos_eta2" in survey.units
        (8, True)
    """
    from neuronatlas.data import bookkeeping_for
    from neuronatlas.record import Recorder

    resolved = resolve_sites(model, sites)
    attn = [s.name for s in resolved if s.hook == "attn"]
    if attn:
        raise TaxonomyError(
            f"survey_units maps unit sites; {attn} are attention maps. Use 'mlp', 'resid' or "
            "module names."
        )
    p = next(model.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    opts = {"threshold": threshold, **dict(taxonomy_options or {})}
    stats: dict[str, UnitStats] = {}
    tax: dict[str, TaxonomyStats] = {}
    token_parts: list[pd.DataFrame] = []
    seen = False
    with Recorder(model, resolved) as rec, torch.inference_mode():
        for batch in as_batches(batches):
            seen = True
            batch = batch.to(dev)
            model(*batch.args, **batch.kwargs)
            acts = rec.pop()
            for site in resolved:
                values = acts[site.name]
                n_pos = int(values.shape[1])
                doc, pos, mask = bookkeeping_for(batch, n_pos)
                tid = (
                    batch.token_id
                    if batch.token_id is not None and n_pos == batch.mask.shape[1]
                    else None
                )
                sb = SiteBatch(values, mask, doc, pos, tid)
                n = sb.n_units
                if site.name not in stats:
                    stats[site.name] = UnitStats(
                        n, top_k=top_k, context=context, threshold=threshold,
                        quantiles=quantiles, device=dev,
                    )  # fmt: skip
                    if taxonomy:
                        tax[site.name] = TaxonomyStats(n, **opts, device=dev)
                stats[site.name].update(sb)
                if taxonomy:
                    tax[site.name].update(sb)
            token_parts.append(_token_rows(batch, tokenizer))
    if not seen:
        raise TaxonomyError("survey_units got no batches; pass at least one batch of inputs.")
    tokens = (
        pd.concat(token_parts, ignore_index=True)
        if token_parts
        else pd.DataFrame(columns=["doc", "pos", "token_id", "token"])
    )
    tokens = tokens.drop_duplicates(["doc", "pos"]).sort_values(["doc", "pos"], ignore_index=True)
    exemplars = _exemplars(resolved, stats, tokens)
    units = _units(resolved, stats, tax, exemplars, tokens)
    return UnitSurvey(units, exemplars, tokens)


def _token_rows(batch: Any, tokenizer: Any) -> pd.DataFrame:
    cols = ["doc", "pos", "token_id", "token"]
    if batch.windows:
        frames = [
            pd.DataFrame({"doc": w.doc, "pos": np.arange(len(w.token_ids)),
                          "token_id": w.token_ids, "token": w.tokens})
            for w in batch.windows
        ]  # fmt: skip
        return pd.concat(frames, ignore_index=True)[cols]
    if batch.token_id is None:
        return pd.DataFrame(columns=cols)
    keep = batch.mask.reshape(-1).cpu()
    ids = batch.token_id.reshape(-1).cpu()[keep].numpy()
    if tokenizer is not None and hasattr(tokenizer, "convert_ids_to_tokens"):
        toks = [str(t) for t in tokenizer.convert_ids_to_tokens(ids.tolist())]
    else:
        toks = [str(i) for i in ids.tolist()]
    return pd.DataFrame(
        {
            "doc": batch.doc.reshape(-1).cpu()[keep].numpy(),
            "pos": batch.pos.reshape(-1).cpu()[keep].numpy(),
            "token_id": ids,
            "token": toks,
        }
    )


def _exemplars(
    sites: list[Site], stats: dict[str, UnitStats], tokens: pd.DataFrame
) -> pd.DataFrame:
    frames = []
    for site in sites:
        ex = stats[site.name].exemplars()
        frame = pd.DataFrame({k: v for k, v in ex.items() if k != "ctx_acts"})
        frame["ctx_acts"] = list(ex["ctx_acts"])
        frame.insert(0, "site", site.name)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    if len(tokens):
        out = out.merge(tokens, on=["doc", "pos"], how="left", sort=False)
    else:
        out["token_id"], out["token"] = pd.NA, None
    cols = ["site", "unit", "rank", "activation", "doc", "pos", "token_id", "token", "ctx_start",
            "ctx_acts"]  # fmt: skip
    return out[cols]


def _units(
    sites: list[Site],
    stats: dict[str, UnitStats],
    tax: dict[str, TaxonomyStats],
    exemplars: pd.DataFrame,
    tokens: pd.DataFrame,
) -> pd.DataFrame:
    frames = []
    for site in sites:
        cols: dict[str, Any] = dict(stats[site.name].result())
        if site.name in tax:
            cols.update(tax[site.name].result())
        n = len(next(iter(cols.values())))
        frame = pd.DataFrame({k: (list(v) if np.ndim(v) == 2 else v) for k, v in cols.items()})
        frame.insert(0, "unit", np.arange(n, dtype=np.int32))
        frame.insert(0, "layer", pd.array([site.layer] * n, dtype="Int32"))
        frame.insert(0, "site", site.name)
        frames.append(frame)
    units = pd.concat(frames, ignore_index=True)
    top = exemplars[exemplars["rank"] == 0][["site", "unit", "token"]]
    units = units.merge(top.rename(columns={"token": "top_token"}), on=["site", "unit"], how="left")
    names = _id_names(tokens)
    if names is not None and "tok_id" in units:
        units["tok"] = units["tok_id"].map(names)
        prev = units["bigram_prev_id"].map(names).fillna("")
        units["bigram"] = (prev + " " + units["bigram_id"].map(names).fillna("")).where(
            units["bigram_id"] >= 0
        )
    return units


def _id_names(tokens: pd.DataFrame) -> dict[int, str] | None:
    """Token string of every id seen in the corpus (None without tokens)."""
    if not len(tokens):
        return None
    first = tokens.drop_duplicates("token_id")
    return dict(zip(first["token_id"].astype(int), first["token"].astype(str), strict=True))
