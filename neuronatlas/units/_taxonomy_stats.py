"""What the unit taxonomy needs from the corpus, collected in the same single pass as UnitStats.

:class:`TaxonomyStats` is an accumulator (see ``neuronatlas/stats/_base.py``): ``update`` folds a
:class:`~neuronatlas.stats.SiteBatch` in, ``merge`` equals one pass over both halves, the state
is plain tensors, and ``result()`` returns per-unit columns for ``units.parquet``. The columns
are defined in ``docs/taxonomy.md``; :func:`~neuronatlas.units.label_units` turns them into
labels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats import SiteBatch, rank_order
from neuronatlas.stats._common import (
    check_batch,
    check_int,
    check_n_units,
    check_other,
    check_setting,
    check_state,
    cpu,
    header,
    resolve_device,
)
from neuronatlas.units._sketch import (
    ABS_BINS,
    abs_histogram,
    best_rows,
    bucket_sum,
    hash_buckets,
    hash_multipliers,
    histogram_median,
)

__all__ = ["TAXONOMY_COLUMNS", "TaxonomyStats"]

#: Columns of :meth:`TaxonomyStats.result`, in order (definitions in docs/taxonomy.md).
TAXONOMY_COLUMNS = (
    "pos_eta2",
    "pos_peak",
    "pos_lo",
    "pos_hi",
    "fire_count",
    "tok_id",
    "tok_precision",
    "tok_recall",
    "tok_f1",
    "bigram_prev_id",
    "bigram_id",
    "bigram_precision",
    "bigram_recall",
    "bigram_f1",
    "absmax",
    "absmax_doc",
    "absmax_pos",
    "absmax_token_id",
    "site_median_abs",
    "massive_ratio",
    "massive_seq_frac",
    "massive_pos_mode",
    "massive_pos_frac",
    "massive_token_frac",
)

_EMPTY = torch.iinfo(torch.int64).max
_LOW32 = (1 << 32) - 1
_MASSIVE_WIDTH = 128  # counters per row of the per-unit sketch of massive tokens


def _pow2_bits(value: Any, name: str) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < 2 or value & (value - 1):
        raise AccumulatorError(
            f"The {name!r} parameter of TaxonomyStats must be a power of two >= 2; got {value!r}."
        )
    return int(value).bit_length() - 1


def _finite_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise AccumulatorError(
            f"The {name!r} parameter of TaxonomyStats must be a finite number; got {value!r}."
        )
    if not math.isfinite(float(value)):
        raise AccumulatorError(
            f"The {name!r} parameter of TaxonomyStats must be a finite number; got {value!r}."
        )
    return float(value)


def _batch_rank(batch: SiteBatch) -> Tensor:
    """``(n,)`` rank of each valid row of the batch in (doc, pos) order (cached on the batch).

    Text and tensor batches list their rows in (doc, pos) order already; one comparison
    (and one host sync) detects that and skips the sort.
    """
    if "taxonomy_rank" not in batch._cache:
        doc, pos = batch.flat_doc, batch.flat_pos
        ascending = bool(
            ((doc[1:] > doc[:-1]) | ((doc[1:] == doc[:-1]) & (pos[1:] > pos[:-1]))).all()
        )
        if ascending:
            rank = torch.arange(doc.numel(), device=doc.device)
        else:
            order = torch.argsort(pos, stable=True)
            order = order[torch.argsort(doc[order], stable=True)]
            rank = torch.empty_like(order)
            rank[order] = torch.arange(order.numel(), device=order.device)
        batch._cache["taxonomy_rank"] = rank
    return batch._cache["taxonomy_rank"]


def _earlier(doc: Tensor, pos: Tensor, than_doc: Tensor, than_pos: Tensor) -> Tensor:
    """True where ``(doc, pos)`` comes before ``(than_doc, than_pos)``."""
    return (doc < than_doc) | ((doc == than_doc) & (pos < than_pos))


class TaxonomyStats:
    """Positional, token, bigram and massive-activation statistics of one site, in one pass.

    Three parts, each bounded in memory (nothing grows with the corpus):

    - **positional**: per-position sums of each unit's activations (positions ``>= max_pos-1``
      share the last bucket) and a shifted sum of squares, giving the share of the variance
      that position explains (``pos_eta2``, the R² of a position-only model over the
      positions seen at least ``min_pos_count`` times) and the positions where the unit is
      most active (``pos_peak``, ``pos_lo``..``pos_hi``).
    - **token / bigram** (batches with ``token_id``): a unit *fires* where ``x > threshold``.
      Exact token counts (a vocabulary-sized vector), a count-min sketch of bigram counts, and
      per unit two count-min sketches of its firing counts keyed by the current token and by
      the (previous, current) pair; candidates are the tokens at the unit's ``candidates``
      largest activations (kept exactly). Each candidate is scored as a predictor of firing:
      ``precision = #(fire and token) / #token``, ``recall = #(fire and token) / #fire``,
      ``F1 = 2 #(fire and token) / (#token + #fire)``; the best candidate's scores are the
      ``tok_*`` / ``bigram_*`` columns.
    - **massive**: each unit's largest ``|x|`` and where it occurred, a magnitude histogram of
      the site (``site_median_abs``), and for units that reach ``massive_min_abs`` the
      position and token where each sequence's largest ``|x|`` falls (input independence).

    Non-finite values never fire and are left out of every sum (they are counted by
    :class:`~neuronatlas.stats.NonFinite`). Padding never reaches any statistic. ``merge``
    equals one pass: sketches, counts and float64 sums add (the positional sums up to the
    float32 rounding of each batch's sums, as for :class:`~neuronatlas.stats.Moments`), the
    candidate top-k and the largest ``|x|`` are exact, ties broken by smaller ``(doc, pos)``
    as in :class:`~neuronatlas.stats.TopK`.

    Memory per site is about ``8 * unit * (2 * max_pos + 2 * sketch_depth * (sketch_width + 64)
    + 4 * candidates)`` bytes, plus 8 bytes per token id of the vocabulary and ``8 *
    sketch_depth * bigram_width`` for the bigram counts: 41 MiB for 1536 units with the defaults.

    Args:
        n_units: units of the site.
        max_pos: position buckets (positions from ``max_pos - 1`` on share the last one).
        min_pos_count: positions with fewer values than this are predicted by the unit's
            overall mean in ``pos_eta2`` and left out of ``pos_peak`` / ``pos_lo`` /
            ``pos_hi`` (a position seen a few times would "explain" whatever happened there).
        threshold: a unit fires where ``x > threshold`` (0.0: where it is active).
        candidates: strongest activations kept per unit whose tokens are the candidates.
        sketch_width: counters per row of the per-unit count-min sketches (a power of two).
        sketch_depth: rows of every count-min sketch.
        bigram_width: counters per row of the site's bigram-count sketch (a power of two).
        massive_min_abs: the magnitude from which a sequence's largest ``|x|`` counts as a
            massive activation (the absolute criterion of Sun et al. 2024, 100 by default).
        median_units: units sampled (evenly spaced) for the site's median ``|x|``.
        vocab_size: token ids expected (the vector of token counts grows when a larger id
            comes, at the cost of one host sync per batch to read the largest id).
        seed: seed of the hash functions (states merge only with the same seed).
        device: where the state lives; when not given it follows the first batch.

    Examples:
        >>> import torch
        >>> from neuronatlas.stats import SiteBatch
        >>> x = torch.zeros(2, 6, 2)
        >>> x[:, 4, 0] = 1.0  # unit 0 fires at position 4 only
        >>> x[..., 1] = torch.randn(2, 6)
        >>> ts = TaxonomyStats(2, max_pos=8, min_pos_count=1)
        >>> ts.update(SiteBatch.from_values(x))
        >>> res = ts.result()
        >>> float(res["pos_eta2"][0]), int(res["pos_peak"][0])
        (1.0, 4)
    """

    def __init__(
        self,
        n_units: int,
        *,
        max_pos: int = 512,
        min_pos_count: int = 30,
        threshold: float = 0.0,
        candidates: int = 8,
        sketch_width: int = 512,
        sketch_depth: int = 2,
        bigram_width: int = 1 << 17,
        massive_min_abs: float = 100.0,
        median_units: int = 256,
        vocab_size: int | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
    ):
        kind = "TaxonomyStats"
        self.n_units = check_n_units(n_units, kind)
        self.settings: dict[str, Any] = {
            "max_pos": check_int(max_pos, "max_pos", kind, low=1),
            "min_pos_count": check_int(min_pos_count, "min_pos_count", kind, low=1),
            "threshold": _finite_number(threshold, "threshold"),
            "candidates": check_int(candidates, "candidates", kind, low=1),
            "sketch_width": sketch_width,
            "sketch_depth": check_int(sketch_depth, "sketch_depth", kind, low=1, high=16),
            "bigram_width": bigram_width,
            "massive_min_abs": _finite_number(massive_min_abs, "massive_min_abs"),
            "median_units": check_int(median_units, "median_units", kind, low=1),
            "seed": check_int(seed, "seed", kind, low=0),
        }
        if self.settings["massive_min_abs"] <= 0:
            raise AccumulatorError(
                f"The 'massive_min_abs' parameter of TaxonomyStats must be > 0; got "
                f"{massive_min_abs!r}."
            )
        self._bits = _pow2_bits(sketch_width, "sketch_width")
        self._big_bits = _pow2_bits(bigram_width, "bigram_width")
        if vocab_size is not None:
            vocab_size = check_int(vocab_size, "vocab_size", kind, low=1)
        self._stride = max(1, self.n_units // self.settings["median_units"])
        self._device_given = device is not None
        self._alloc(resolve_device(device), vocab_size or 1)

    def _alloc(self, dev: torch.device, vocab: int) -> None:
        s, u = self.settings, self.n_units
        p, d, k, w = s["max_pos"], s["sketch_depth"], s["candidates"], s["sketch_width"]
        f64 = {"dtype": torch.float64, "device": dev}
        i64 = {"dtype": torch.int64, "device": dev}
        seed = s["seed"]
        self.mult_ = {
            name: hash_multipliers(d, seed * 4 + i).to(dev)
            for i, name in enumerate(("tok", "bigram", "freq", "massive"))
        }
        # positional
        self.shift_: Tensor | None = None  # (unit,) float64, set by the first batch
        self.count_ = torch.zeros(u, **i64)
        self.pos_n_ = torch.zeros(p, **i64)
        self.pos_bad_: Tensor | None = None  # (max_pos, unit) non-finite values left out
        self.pos_sum_ = torch.zeros(p, u, **f64)
        self.sq_ = torch.zeros(u, **f64)
        # tokens (None: not seen yet; then True/False for batches with / without token ids)
        self.tokens_: bool | None = None
        self.fire_n_ = torch.zeros(u, **i64)
        self.tok_freq_ = torch.zeros(vocab, **i64)
        self.big_freq_ = torch.zeros(d, 1 << self._big_bits, **i64)
        self.tok_cms_ = torch.zeros(d, w, u, **f64)
        self.big_cms_ = torch.zeros(d, w, u, **f64)
        self.cand_val_ = torch.full((u, k), float("-inf"), **f64)
        self.cand_doc_ = torch.full((u, k), _EMPTY, **i64)
        self.cand_pos_ = torch.full((u, k), _EMPTY, **i64)
        self.cand_key_ = torch.full((u, k), -1, **i64)
        # massive
        self.abs_hist_ = torch.zeros(ABS_BINS, **i64)
        self.absmax_ = torch.full((u,), float("-inf"), **f64)
        self.absmax_doc_ = torch.full((u,), _EMPTY, **i64)
        self.absmax_pos_ = torch.full((u,), _EMPTY, **i64)
        self.absmax_tok_ = torch.full((u,), -1, **i64)
        self.n_seq_ = torch.zeros((), **i64)
        self.mseq_ = torch.zeros(u, **i64)
        self.mpos_ = torch.zeros(p, u, **i64)
        self.mtok_cms_ = torch.zeros(d, _MASSIVE_WIDTH, u, **f64)

    _TENSORS = (
        "shift_",
        "count_",
        "pos_n_",
        "pos_bad_",
        "pos_sum_",
        "sq_",
        "fire_n_",
        "tok_freq_",
        "big_freq_",
        "tok_cms_",
        "big_cms_",
        "cand_val_",
        "cand_doc_",
        "cand_pos_",
        "cand_key_",
        "abs_hist_",
        "absmax_",
        "absmax_doc_",
        "absmax_pos_",
        "absmax_tok_",
        "n_seq_",
        "mseq_",
        "mpos_",
        "mtok_cms_",
    )

    @property
    def device(self) -> torch.device:
        return self.count_.device

    def to(self, device: torch.device | str) -> TaxonomyStats:
        """Move all state to ``device`` (in place); returns ``self``."""
        for name in self._TENSORS:
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        self.mult_ = {k: v.to(device) for k, v in self.mult_.items()}
        return self

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"TaxonomyStats(n_units={self.n_units}, max_pos={s['max_pos']}, "
            f"threshold={s['threshold']}, device={self.device})"
        )

    # ------------------------------------------------------------------------------ update

    def update(self, batch: SiteBatch) -> None:
        """Fold one batch of this site in."""
        check_batch(batch, self.n_units, "TaxonomyStats")
        if batch.values.device != self.device:
            if self._device_given:
                check_batch(batch, self.n_units, "TaxonomyStats", self.device)
            self.to(batch.values.device)
        if batch.token_id is not None and tuple(batch.token_id.shape) != tuple(batch.mask.shape):
            raise AccumulatorError(
                f"SiteBatch.token_id must be (batch, pos) = {tuple(batch.mask.shape)} like the "
                f"mask; got {tuple(batch.token_id.shape)}."
            )
        self._check_tokens(batch.token_id is not None)
        self.n_seq_ += batch.mask.any(dim=1).sum()
        if batch.n == 0:
            return
        fin = batch.finite if batch.has_nonfinite else None
        self._update_positions(batch, fin)
        keys = self._token_keys(batch) if batch.token_id is not None else None
        if keys is not None:
            self._update_tokens(batch, fin, *keys)
        self._update_massive(batch, fin, keys[0] if keys is not None else None)

    def _check_tokens(self, has: bool) -> None:
        if self.tokens_ is None:
            self.tokens_ = has
        elif self.tokens_ != has:
            raise AccumulatorError(
                "TaxonomyStats got batches with and without token ids for the same site. "
                "Feed either token batches (SiteBatch.token_id set) or plain ones throughout."
            )

    def _update_positions(self, batch: SiteBatch, fin: Tensor | None) -> None:
        x, wd = batch.flat, batch.work_dtype
        p = self.settings["max_pos"]
        if self.shift_ is None:  # the first batch's mean: keeps the shifted sums well conditioned
            s1 = batch.colsum if fin is None else torch.where(fin, x, 0).sum(0, dtype=wd)
            self.shift_ = torch.nan_to_num(s1.double() / batch.n_finite.clamp(min=1))
        bucket = batch.flat_pos.clamp(0, p - 1)
        d = x - self.shift_.to(wd)
        if fin is not None:
            d = torch.where(fin, d, 0)
            bad = bucket_sum(bucket, (~fin).to(wd), p)
            if self.pos_bad_ is None:
                self.pos_bad_ = torch.zeros(p, self.n_units, dtype=torch.int64, device=x.device)
            self.pos_bad_ += bad.to(torch.int64)
        self.pos_sum_ += bucket_sum(bucket, d, p).double()
        self.sq_ += torch.linalg.vector_norm(d, dim=0).double() ** 2
        self.pos_n_ += torch.bincount(bucket, minlength=p)
        self.count_ += batch.n_finite

    def _token_keys(self, batch: SiteBatch) -> tuple[Tensor, Tensor]:
        """``(n,)`` current token ids and bigram keys ``(prev + 1) << 32 | cur`` of the valid rows."""
        tid = batch.token_id.to(self.device, torch.int64)  # type: ignore[union-attr]
        ok = batch.mask[:, :-1] & (batch.doc[:, 1:] == batch.doc[:, :-1])
        prev = torch.full_like(tid, -1)
        prev[:, 1:] = torch.where(ok, tid[:, :-1], -1)
        idx = batch.flat_index
        cur, prv = tid.reshape(-1)[idx], prev.reshape(-1)[idx]
        lo, hi = (int(v) for v in torch.aminmax(cur))
        if lo < 0 or hi > _LOW32 // 2:
            raise AccumulatorError(
                f"Token ids must be in [0, 2**31); this batch has ids from {lo} to {hi} at valid "
                "positions. Check that the mask covers the padding and that token_id holds "
                "the input ids."
            )
        if hi >= self.tok_freq_.numel():
            grown = torch.zeros(hi + 1, dtype=torch.int64, device=self.device)
            grown[: self.tok_freq_.numel()] = self.tok_freq_
            self.tok_freq_ = grown
        return cur, ((prv + 1) << 32) | cur

    def _update_tokens(
        self, batch: SiteBatch, fin: Tensor | None, cur: Tensor, big: Tensor
    ) -> None:
        x, wd = batch.flat, batch.work_dtype
        w, dev = self.settings["sketch_width"], x.device
        self.tok_freq_ += torch.bincount(cur, minlength=self.tok_freq_.numel())
        for r, h in enumerate(hash_buckets(big, self.mult_["freq"], self._big_bits)):
            self.big_freq_[r] += torch.bincount(h, minlength=self.big_freq_.shape[1])
        fire = torch.gt(
            x, self.settings["threshold"], out=torch.empty(x.shape, dtype=wd, device=dev)
        )
        if fin is not None:
            fire.masked_fill_(~fin, 0)
        self.fire_n_ += fire.sum(0).to(torch.int64)
        for table, keys, name in ((self.tok_cms_, cur, "tok"), (self.big_cms_, big, "bigram")):
            for r, h in enumerate(hash_buckets(keys, self.mult_[name], self._bits)):
                table[r] += bucket_sum(h, fire, w).double()
        self._update_candidates(batch, big)

    def _update_candidates(self, batch: SiteBatch, big: Tensor) -> None:
        """Keep each unit's ``candidates`` strongest activations (exact, ties by (doc, pos))."""
        bmax = batch.minmax[1].double()
        kth = self.cand_val_[:, -1]
        need = bmax > kth
        tied = torch.nonzero((bmax == kth) & torch.isfinite(kth)).reshape(-1)
        if tied.numel():  # equal to the k-th best: wins only with a smaller (doc, pos)
            sub = batch.flat.index_select(1, tied)
            before = _earlier(
                batch.flat_doc[:, None],
                batch.flat_pos[:, None],
                self.cand_doc_[tied, -1],
                self.cand_pos_[tied, -1],
            )
            need[tied] |= ((sub == kth[tied]) & before).any(0)
        units = torch.nonzero(need).reshape(-1)
        if not units.numel():
            return
        sub = batch.flat if units.numel() == self.n_units else batch.flat.index_select(1, units)
        sub = sub.to(batch.work_dtype)
        if batch.has_nonfinite:
            sub = torch.where(torch.isfinite(sub), sub, float("-inf"))
        value, row = best_rows(sub, self.settings["candidates"], _batch_rank(batch))
        valid = value > float("-inf")
        doc = torch.where(valid, batch.flat_doc[row], _EMPTY)
        pos = torch.where(valid, batch.flat_pos[row], _EMPTY)
        key = torch.where(valid, big[row], -1)
        self._keep_candidates(
            units,
            torch.cat([self.cand_val_[units], value.T.double()], dim=1),
            torch.cat([self.cand_doc_[units], doc.T], dim=1),
            torch.cat([self.cand_pos_[units], pos.T], dim=1),
            torch.cat([self.cand_key_[units], key.T], dim=1),
        )

    def _keep_candidates(
        self, units: Tensor | None, value: Tensor, doc: Tensor, pos: Tensor, key: Tensor
    ) -> None:
        best = rank_order(value, doc, pos)[:, : self.settings["candidates"]]
        cols = [t.gather(1, best) for t in (value, doc, pos, key)]
        if units is None:
            self.cand_val_, self.cand_doc_, self.cand_pos_, self.cand_key_ = cols
        else:
            for name, t in zip(
                ("cand_val_", "cand_doc_", "cand_pos_", "cand_key_"), cols, strict=True
            ):
                getattr(self, name)[units] = t

    def _update_massive(self, batch: SiteBatch, fin: Tensor | None, cur: Tensor | None) -> None:
        x = batch.flat
        self.abs_hist_ += abs_histogram(x[:, :: self._stride])
        lo, hi = batch.minmax
        bam = torch.maximum(hi.double(), -lo.double())  # -inf for units without finite values
        # the largest |x| of each unit and where: only units that reach their current best work
        units = torch.nonzero((bam >= self.absmax_) & torch.isfinite(bam)).reshape(-1)
        if units.numel():
            sub = x.index_select(1, units).abs().to(batch.work_dtype)
            if fin is not None:
                sub = torch.where(fin.index_select(1, units), sub, float("-inf"))
            value, row = best_rows(sub, 1, _batch_rank(batch))
            value, row = value[0].double(), row[0]
            doc, pos = batch.flat_doc[row], batch.flat_pos[row]
            cur_val = self.absmax_[units]
            better = (value > cur_val) | (
                (value == cur_val)
                & _earlier(doc, pos, self.absmax_doc_[units], self.absmax_pos_[units])
            )
            take = units[better]
            self.absmax_[take] = value[better]
            self.absmax_doc_[take] = doc[better]
            self.absmax_pos_[take] = pos[better]
            if cur is not None:
                self.absmax_tok_[take] = cur[row[better]]
        # per sequence: where the largest |x| falls, for units that reach massive_min_abs
        big = torch.nonzero(bam >= self.settings["massive_min_abs"]).reshape(-1)
        if big.numel():
            self._update_sequences(batch, big)

    def _update_sequences(self, batch: SiteBatch, units: Tensor) -> None:
        p = self.settings["max_pos"]
        v = batch.values.index_select(2, units).abs()
        ok = batch.mask[..., None] & torch.isfinite(v)
        rowmax, arg = torch.where(ok, v, -1.0).max(dim=1)  # (batch, m): first largest position
        hit = rowmax >= self.settings["massive_min_abs"]
        self.mseq_.index_add_(0, units, hit.sum(0))
        rows, cols = torch.nonzero(hit, as_tuple=True)
        if not rows.numel():
            return
        at = arg[rows, cols]
        bucket = batch.pos[rows, at].clamp(0, p - 1)
        ones = torch.ones(rows.numel(), dtype=torch.int64, device=rows.device)
        self.mpos_.index_put_((bucket, units[cols]), ones, accumulate=True)
        if batch.token_id is not None:
            tok = batch.token_id.to(self.device, torch.int64)[rows, at]
            bits = _MASSIVE_WIDTH.bit_length() - 1
            for r, h in enumerate(hash_buckets(tok, self.mult_["massive"], bits)):
                self.mtok_cms_[r].index_put_((h, units[cols]), ones.double(), accumulate=True)

    # ------------------------------------------------------------------------------- merge

    def merge(self, other: TaxonomyStats) -> TaxonomyStats:
        """Fold the statistics of another shard of the same site in; returns ``self``.

        Raises:
            AccumulatorError: another number of units, other settings, or one shard fed token
                batches and the other plain ones.
        """
        check_other(self, other)
        for key, mine in self.settings.items():
            check_setting("TaxonomyStats", key, mine, other.settings[key])
        if other.tokens_ is not None:
            self._check_tokens(bool(other.tokens_))
        dev = self.device
        o = {name: None if getattr(other, name) is None else getattr(other, name).to(dev)
             for name in self._TENSORS}  # fmt: skip
        if o["shift_"] is not None:
            self._merge_positions(o)
        for name in ("fire_n_", "big_freq_", "tok_cms_", "big_cms_", "abs_hist_", "n_seq_",
                     "mseq_", "mpos_", "mtok_cms_"):  # fmt: skip
            getattr(self, name).add_(o[name])
        n = max(self.tok_freq_.numel(), o["tok_freq_"].numel())
        freq = torch.zeros(n, dtype=torch.int64, device=dev)
        freq[: self.tok_freq_.numel()] += self.tok_freq_
        freq[: o["tok_freq_"].numel()] += o["tok_freq_"]
        self.tok_freq_ = freq
        self._keep_candidates(
            None,
            *(torch.cat([getattr(self, k), o[k]], dim=1)
              for k in ("cand_val_", "cand_doc_", "cand_pos_", "cand_key_")),
        )  # fmt: skip
        theirs = o["absmax_"]
        better = (theirs > self.absmax_) | (
            (theirs == self.absmax_)
            & _earlier(o["absmax_doc_"], o["absmax_pos_"], self.absmax_doc_, self.absmax_pos_)
        )
        for name in ("absmax_", "absmax_doc_", "absmax_pos_", "absmax_tok_"):
            setattr(self, name, torch.where(better, o[name], getattr(self, name)))
        return self

    def _merge_positions(self, o: dict[str, Any]) -> None:
        """Add the other's positional sums, moved from its shift to this one's (exact algebra)."""
        if self.shift_ is None:
            self.shift_ = o["shift_"].clone()
        delta = o["shift_"] - self.shift_  # d_mine = d_theirs + delta
        n_pu = o["pos_n_"][:, None] - (0 if o["pos_bad_"] is None else o["pos_bad_"])
        s1 = o["pos_sum_"].sum(0)
        self.pos_sum_ += o["pos_sum_"] + n_pu * delta
        self.sq_ += o["sq_"] + 2 * delta * s1 + o["count_"] * delta**2
        self.count_ += o["count_"]
        self.pos_n_ += o["pos_n_"]
        if o["pos_bad_"] is not None:
            self.pos_bad_ = o["pos_bad_"] + (0 if self.pos_bad_ is None else self.pos_bad_)

    # ------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Plain CPU tensors and numbers; ``torch.load(..., weights_only=True)`` reads it."""
        state = header("TaxonomyStats", self.n_units, settings=dict(self.settings))
        state["tokens"] = -1 if self.tokens_ is None else int(self.tokens_)
        state["tensors"] = {
            name.rstrip("_"): cpu(getattr(self, name))
            for name in self._TENSORS
            if getattr(self, name) is not None
        }
        return state

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], *, device: torch.device | str | None = None
    ) -> TaxonomyStats:
        """Rebuild the statistics saved by :meth:`state_dict`, on ``device`` (default CPU)."""
        check_state(state, "TaxonomyStats")
        self = cls(state["n_units"], **state["settings"], device=device)
        saved = state["tensors"]
        for name in self._TENSORS:
            key = name.rstrip("_")
            if key in saved:
                setattr(self, name, saved[key].to(self.device).clone())
            elif name not in ("shift_", "pos_bad_"):
                raise AccumulatorError(
                    f"TaxonomyStats state is missing {key!r}; it is corrupted. Recompute it."
                )
        self.tokens_ = None if state["tokens"] < 0 else bool(state["tokens"])
        if tuple(self.pos_sum_.shape) != (self.settings["max_pos"], self.n_units):
            raise AccumulatorError(
                f"TaxonomyStats state is inconsistent: pos_sum has shape "
                f"{tuple(self.pos_sum_.shape)}, expected (max_pos, unit) = "
                f"{(self.settings['max_pos'], self.n_units)}. Recompute it."
            )
        return self

    # ------------------------------------------------------------------------------ result

    def result(self) -> dict[str, np.ndarray]:
        """Per-unit columns :data:`TAXONOMY_COLUMNS` (definitions in docs/taxonomy.md).

        Ids are int64 with -1 where undefined; scores are float64 with NaN where undefined
        (no data, a constant unit, no token ids).
        """
        cols: dict[str, np.ndarray] = {}
        cols.update(self._positional_result())
        cols.update(self._token_result())
        cols.update(self._massive_result())
        return {name: cols[name] for name in TAXONOMY_COLUMNS}

    def _positional_result(self) -> dict[str, np.ndarray]:
        n = self.count_.cpu().double().numpy()
        n_pu = self.pos_n_.cpu()[:, None].double()
        if self.pos_bad_ is not None:
            n_pu = n_pu - self.pos_bad_.cpu().double()
        n_pu = n_pu.numpy()
        s = self.pos_sum_.cpu().numpy()
        # a position seen fewer than min_pos_count times is predicted by the overall mean
        rare = n_pu < self.settings["min_pos_count"]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = s.sum(0) / n
            ss_total = self.sq_.cpu().numpy() - n * mean**2
            m_p = np.where(rare, np.nan, s / np.where(rare, 1, n_pu))
            ss_between = np.nansum(n_pu * (m_p - mean) ** 2, axis=0)
            ok = (n > 0) & (ss_total > 0)
            eta2 = np.where(ok, np.clip(ss_between / np.where(ok, ss_total, 1), 0.0, 1.0), np.nan)
        idx = np.arange(s.shape[0])[:, None]
        filled = np.where(np.isnan(m_p), -np.inf, m_p)
        peak = filled.argmax(0)
        peak_val = filled[peak, np.arange(self.n_units)]
        above = filled >= (peak_val + mean)[None, :] / 2
        lo = np.where(~above & (idx < peak), idx, -1).max(0) + 1
        hi = np.where(~above & (idx > peak), idx, s.shape[0]).min(0) - 1
        none = ~ok | rare.all(0)
        return {
            "pos_eta2": eta2,
            "pos_peak": np.where(none, -1, peak).astype(np.int64),
            "pos_lo": np.where(none, -1, lo).astype(np.int64),
            "pos_hi": np.where(none, -1, hi).astype(np.int64),
        }

    def _estimate(self, table: Tensor, keys: Tensor, mult: Tensor, bits: int) -> Tensor:
        """``(unit, k)`` count-min estimates of per-unit ``table`` (depth, width, unit) at ``keys``."""
        u, k = keys.shape
        h = hash_buckets(keys.reshape(-1), mult, bits).reshape(-1, u, k)  # (depth, unit, k)
        per_row = table.permute(0, 2, 1).gather(2, h)
        return per_row.min(0).values

    def _token_result(self) -> dict[str, np.ndarray]:
        u = self.n_units
        out: dict[str, np.ndarray] = {
            "fire_count": self.fire_n_.cpu().numpy().astype(np.int64),
            **{c: np.full(u, -1, np.int64) for c in ("tok_id", "bigram_prev_id", "bigram_id")},
            **{c: np.full(u, np.nan) for c in ("tok_precision", "tok_recall", "tok_f1",
                                                 "bigram_precision", "bigram_recall", "bigram_f1")},
        }  # fmt: skip
        if not self.tokens_:
            return out
        key = self.cand_key_
        valid = key >= 0
        safe = torch.where(valid, key, 0)
        cur, prev = safe & _LOW32, (safe >> 32) - 1
        fire = self.fire_n_.double()[:, None]
        n_tok = self.tok_freq_[cur.clamp(max=self.tok_freq_.numel() - 1)].double()
        c_tok = self._estimate(self.tok_cms_, cur, self.mult_["tok"], self._bits)
        c_tok = torch.minimum(torch.minimum(c_tok, n_tok), fire)
        h = hash_buckets(safe.reshape(-1), self.mult_["freq"], self._big_bits)
        n_big = self.big_freq_.gather(1, h).min(0).values.reshape(safe.shape).double()
        n_big = torch.minimum(n_big, n_tok)
        c_big = self._estimate(self.big_cms_, safe, self.mult_["bigram"], self._bits)
        c_big = torch.minimum(torch.minimum(c_big, n_big), fire)
        rows = torch.arange(u, device=key.device)
        for name, c, n_key in (("tok", c_tok, n_tok), ("bigram", c_big, n_big)):
            f1 = torch.where(valid, 2 * c / (n_key + fire).clamp(min=1), -1.0)
            best = f1.argmax(1)
            has = valid.any(1)
            cb, nb = c[rows, best], n_key[rows, best]
            scores = {
                "precision": cb / nb.clamp(min=1),
                "recall": cb / fire[:, 0].clamp(min=1),
                "f1": f1[rows, best],
            }
            for s, v in scores.items():
                out[f"{name}_{s}"] = torch.where(has, v, float("nan")).cpu().numpy()
            ids = torch.where(has, cur[rows, best], -1).cpu().numpy()
            if name == "tok":
                out["tok_id"] = ids
            else:
                out["bigram_id"] = ids
                out["bigram_prev_id"] = torch.where(has, prev[rows, best], -1).cpu().numpy()
        return out

    def _massive_result(self) -> dict[str, np.ndarray]:
        absmax = self.absmax_.cpu()
        seen = torch.isfinite(absmax)
        median = histogram_median(self.abs_hist_)
        n_seq = max(int(self.n_seq_), 1)
        amax = torch.where(seen, absmax, float("nan")).numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = amax / median if median > 0 else np.where(seen.numpy(), np.inf, np.nan)
        top, mode = self.mpos_.cpu().max(0)
        any_seq = self.mseq_.cpu() > 0
        tok = self.absmax_tok_
        if self.tokens_:
            bits = _MASSIVE_WIDTH.bit_length() - 1
            est = self._estimate(
                self.mtok_cms_, tok.clamp(min=0)[:, None], self.mult_["massive"], bits
            )
            token_frac = torch.where(tok >= 0, est[:, 0] / n_seq, 0.0).cpu().numpy()
        else:
            token_frac = np.full(self.n_units, np.nan)
        return {
            "absmax": amax,
            "absmax_doc": torch.where(seen, self.absmax_doc_.cpu(), -1).numpy(),
            "absmax_pos": torch.where(seen, self.absmax_pos_.cpu(), -1).numpy(),
            "absmax_token_id": torch.where(seen, tok.cpu(), -1).numpy(),
            "site_median_abs": np.full(self.n_units, median),
            "massive_ratio": np.asarray(ratio, dtype=np.float64),
            "massive_seq_frac": (self.mseq_.cpu().double() / n_seq).numpy(),
            "massive_pos_mode": torch.where(any_seq, mode, -1).numpy().astype(np.int64),
            "massive_pos_frac": (top.double() / n_seq).numpy(),
            "massive_token_frac": token_frac,
        }
