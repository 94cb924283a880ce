"""Exact top-k exemplars per unit: the strongest activations with their (doc, pos) and context."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuronatlas.errors import AccumulatorError
from neuronatlas.stats._base import SiteBatch
from neuronatlas.stats._common import (
    block_rows,
    check_batch,
    check_int,
    check_n_units,
    check_other,
    check_setting,
    check_state,
    cpu,
    header,
    resolve_device,
    row_blocks,
)

__all__ = ["TopK", "rank_order"]

_EMPTY = torch.iinfo(torch.int64).max


def rank_order(value: Tensor, doc: Tensor, pos: Tensor) -> Tensor:
    """Per-row order of candidates: larger value first, then smaller doc, then smaller pos.

    Args:
        value: ``(unit, m)`` activations (``-inf`` for empty slots, which sort last).
        doc: ``(unit, m)`` int64 document ids.
        pos: ``(unit, m)`` int64 positions.

    Returns:
        ``(unit, m)`` int64 column indices, best first.

    Examples:
        >>> import torch
        >>> rank_order(torch.tensor([[1.0, 2.0, 2.0]]), torch.tensor([[0, 5, 3]]),
        ...            torch.tensor([[0, 0, 9]])).tolist()
        [[2, 1, 0]]
    """
    order = torch.argsort(pos, dim=1, stable=True)
    order = order.gather(1, torch.argsort(doc.gather(1, order), dim=1, stable=True))
    by_value = torch.argsort(value.gather(1, order), dim=1, descending=True, stable=True)
    return order.gather(1, by_value)


def _batch_rank(batch: SiteBatch) -> Tensor:
    """``(n,)`` rank of each valid row of the batch by (doc, pos), 0 = smallest."""
    doc, pos = batch.flat_doc, batch.flat_pos
    order = torch.argsort(pos, stable=True)
    order = order[torch.argsort(doc[order], stable=True)]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return rank


class TopK:
    """The ``k`` largest finite activations of each unit over the whole stream, exactly.

    Order and ties: larger activation first, then smaller ``doc``, then smaller ``pos`` — the
    result does not depend on how the stream is batched, sharded or merged. Activations are
    compared at the precision they arrive in (and stored as float64).

    Each exemplar keeps ``value``, ``doc``, ``pos`` and the unit's activations at the
    ``context`` positions on either side of it in the same batch row (``2 * context + 1``
    values, the exemplar in the middle; NaN where the slot is outside the row, masked out, or
    belongs to another doc), so a viewer can shade the context without running the model.

    **Cost.** The current ``k``-th best of each unit is a threshold: a batch only costs work
    for units whose batch max (one shared reduction, :attr:`SiteBatch.minmax`) beats it, or
    ties it with a smaller (doc, pos) — after the first batches almost none. For those units:
    one ``topk(k + 1)`` over the batch, a sort of ``2k`` candidates, and a gather of the
    context of the candidates that enter the top k.

    Args:
        n_units: units of the site.
        k: exemplars per unit.
        context: positions kept on each side of an exemplar.
        device: where the state lives; default CPU.

    Examples:
        >>> import torch
        >>> from neuronatlas.stats import SiteBatch, TopK
        >>> t = TopK(1, k=2, context=1)
        >>> t.update(SiteBatch.from_values(torch.tensor([[[1.0], [5.0], [3.0]]])))
        >>> ex = t.exemplars()
        >>> ex["activation"].tolist(), ex["pos"].tolist(), ex["ctx_acts"].tolist()
        ([5.0, 3.0], [1, 2], [[1.0, 5.0, 3.0], [5.0, 3.0, nan]])
    """

    def __init__(
        self,
        n_units: int,
        *,
        k: int = 20,
        context: int = 10,
        device: torch.device | str | None = None,
    ):
        self.n_units = check_n_units(n_units, "TopK")
        self.k = check_int(k, "k", "TopK", low=1)
        self.context = check_int(context, "context", "TopK", low=0)
        dev = resolve_device(device)
        shape = (self.n_units, self.k)
        self.value_ = torch.full(shape, float("-inf"), dtype=torch.float64, device=dev)
        self.doc_ = torch.full(shape, _EMPTY, dtype=torch.int64, device=dev)
        self.pos_ = torch.full(shape, _EMPTY, dtype=torch.int64, device=dev)
        self.ctx_ = torch.full((*shape, 2 * self.context + 1), float("nan"), device=dev)

    @property
    def device(self) -> torch.device:
        return self.value_.device

    # --- update ---

    def update(self, batch: SiteBatch) -> None:
        """Fold one batch in.

        Units whose top k is still filling take the batch's own top k (``torch.topk``). Every
        other unit only looks at the values that reach its current k-th best: one comparison
        pass over the batch finds them (about ``k / t`` per unit after ``t`` batches), and a
        small sort by (unit, value, doc, pos) merges them with the kept exemplars.
        """
        check_batch(batch, self.n_units, "TopK", self.device)
        if batch.n == 0:
            return
        kth = self.value_[:, -1]
        filling = torch.isinf(kth)  # -inf: fewer than k exemplars so far
        need = batch.minmax[1].double() >= kth
        first = torch.nonzero(need & filling).reshape(-1)
        if first.numel():
            self._take(batch, first)
        rest = need & ~filling
        if bool(rest.any()):
            self._take_above(batch, rest)

    def _take_above(self, batch: SiteBatch, units_mask: Tensor) -> None:
        """Merge the values that reach each unit's k-th best (ties included) into its top k."""
        x = batch.flat
        thr = torch.where(units_mask, self.value_[:, -1], float("inf")).to(x.dtype)
        step = block_rows(x)  # cache-sized row blocks (several times faster than one pass)
        rows, units = [], []
        for start in row_blocks(x):
            hit = x[start : start + step] >= thr
            if batch.has_nonfinite:
                hit &= torch.isfinite(x[start : start + step])
            r, u = torch.nonzero(hit, as_tuple=True)
            rows.append(r + start)
            units.append(u)
        row, unit = torch.cat(rows), torch.cat(units)
        if row.numel() == 0:
            return
        k = self.k
        touched = torch.unique(unit)  # sorted
        m = touched.numel()
        slot = torch.searchsorted(touched, unit)  # candidate -> index among touched units
        # kept exemplars of the touched units, then the candidates; one stable lexsort
        n_c = row.numel()
        owner = torch.cat([torch.arange(m, device=row.device).repeat_interleave(k), slot])
        value = torch.cat([self.value_[touched].reshape(-1), x[row, unit].double()])
        doc = torch.cat([self.doc_[touched].reshape(-1), batch.flat_doc[row]])
        pos = torch.cat([self.pos_[touched].reshape(-1), batch.flat_pos[row]])
        origin = torch.cat(  # >= 0: candidate index; < 0: kept slot -(j + 1)
            [-(torch.arange(m * k, device=row.device) + 1), torch.arange(n_c, device=row.device)]
        )
        order = torch.argsort(pos, stable=True)
        order = order[torch.argsort(doc[order], stable=True)]
        order = order[torch.argsort(value[order], descending=True, stable=True)]
        order = order[torch.argsort(owner[order], stable=True)]
        # each touched unit owns k kept + its candidates; its first k entries are the new top k
        counts = torch.bincount(owner, minlength=m)
        start = torch.cumsum(counts, 0) - counts
        best = order[(start[:, None] + torch.arange(k, device=row.device)).reshape(-1)]
        new_value = value[best].reshape(m, k)
        new_doc = doc[best].reshape(m, k)
        new_pos = pos[best].reshape(m, k)
        src = origin[best].reshape(m, k)
        kept = src < 0
        old_slot = torch.where(kept, -src - 1, 0)  # flat index into (touched, k)
        ctx = self.ctx_[touched].reshape(m * k, -1)[old_slot.reshape(-1)].reshape(m, k, -1)
        i, j = torch.nonzero(~kept, as_tuple=True)
        if i.numel():
            c = src[i, j]
            ctx[i, j] = self._context(batch, touched[i], row[c], new_doc[i, j])
        self.value_[touched] = new_value
        self.doc_[touched] = new_doc
        self.pos_[touched] = new_pos
        self.ctx_[touched] = ctx

    def _candidates(self, batch: SiteBatch, units: Tensor) -> tuple[Tensor, Tensor]:
        """Top ``min(k, n)`` rows of the batch for each of ``units``, exact with ties.

        Returns ``(value, row)``, each ``(k', m)``: values in the work dtype (``-inf`` where a
        unit has fewer finite values) and row indices into :attr:`SiteBatch.flat`.
        """
        sub = batch.flat.index_select(1, units).to(batch.work_dtype)
        if batch.has_nonfinite:
            sub = torch.where(torch.isfinite(sub), sub, float("-inf"))
        n, k = sub.shape[0], self.k
        if n <= k:
            return torch.sort(sub, dim=0, descending=True)
        value, row = torch.topk(sub, k + 1, dim=0)
        edge = value[k - 1]
        tie = torch.nonzero((edge == value[k]) & torch.isfinite(edge)).reshape(-1)
        value, row = value[:k], row[:k]
        if tie.numel():
            # the k-th value also occurs outside the top k: its slots go to the smallest (doc, pos)
            cut = edge[tie]
            n_above = (value[:, tie] > cut).sum(0)
            key = torch.where(sub[:, tie] == cut, _batch_rank(batch)[:, None], _EMPTY)
            first = torch.topk(key, k, dim=0, largest=False).indices
            slot = torch.arange(k, device=sub.device)[:, None]
            src = first.gather(0, (slot - n_above).clamp(min=0))
            row[:, tie] = torch.where(slot >= n_above, src, row[:, tie])
        return value, row

    def _context(self, batch: SiteBatch, units: Tensor, row: Tensor, doc: Tensor) -> Tensor:
        """``(r, 2 * context + 1)`` float32 activations of ``units[i]`` around ``row[i]``."""
        n_pos, n_units = batch.values.shape[1], self.n_units
        flat_idx = batch.flat_index[row]
        b, p = flat_idx // n_pos, flat_idx % n_pos
        offs = torch.arange(-self.context, self.context + 1, device=row.device)
        pp = p[:, None] + offs
        inside = (pp >= 0) & (pp < n_pos)
        cell = b[:, None] * n_pos + pp.clamp(0, n_pos - 1)  # index into the (batch * pos) grid
        ctx = batch.values.take(cell * n_units + units[:, None]).float()
        ok = inside & batch.mask.take(cell) & (batch.doc.take(cell) == doc[:, None])
        return torch.where(ok, ctx, float("nan"))

    def _take(self, batch: SiteBatch, units: Tensor) -> None:
        value, row = self._candidates(batch, units)  # (k', m)
        valid = value > float("-inf")
        doc = torch.where(valid, batch.flat_doc[row], _EMPTY).T
        pos = torch.where(valid, batch.flat_pos[row], _EMPTY).T
        k = self.k
        all_value = torch.cat([self.value_[units], value.T.double()], dim=1)
        all_doc = torch.cat([self.doc_[units], doc], dim=1)
        all_pos = torch.cat([self.pos_[units], pos], dim=1)
        best = rank_order(all_value, all_doc, all_pos)[:, :k]  # (m, k) into [old k | new k']
        new_doc = all_doc.gather(1, best)
        ctx = self.ctx_[units].gather(
            1, best.clamp(max=k - 1)[..., None].expand(-1, -1, self.ctx_.shape[2])
        )
        # context only for the new candidates that made it into the top k
        i, j = torch.nonzero(best >= k, as_tuple=True)
        if i.numel():
            new_row = row.T[i, best[i, j] - k]
            ctx[i, j] = self._context(batch, units[i], new_row, new_doc[i, j])
        self.value_[units] = all_value.gather(1, best)
        self.doc_[units] = new_doc
        self.pos_[units] = all_pos.gather(1, best)
        self.ctx_[units] = ctx

    # --- merge / state ---

    def merge(self, other: TopK) -> TopK:
        """Fold another :class:`TopK` of the same site and settings in; returns ``self``."""
        check_other(self, other)
        check_setting("TopK", "k", self.k, other.k)
        check_setting("TopK", "context", self.context, other.context)
        dev = self.device
        value = torch.cat([self.value_, other.value_.to(dev)], dim=1)
        doc = torch.cat([self.doc_, other.doc_.to(dev)], dim=1)
        pos = torch.cat([self.pos_, other.pos_.to(dev)], dim=1)
        ctx = torch.cat([self.ctx_, other.ctx_.to(dev)], dim=1)
        best = rank_order(value, doc, pos)[:, : self.k]
        self.value_, self.doc_, self.pos_ = (t.gather(1, best) for t in (value, doc, pos))
        self.ctx_ = ctx.gather(1, best[..., None].expand(-1, -1, ctx.shape[2]))
        return self

    def to(self, device: torch.device | str) -> TopK:
        self.value_, self.doc_, self.pos_, self.ctx_ = (
            t.to(device) for t in (self.value_, self.doc_, self.pos_, self.ctx_)
        )
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            **header("TopK", self.n_units, k=self.k, context=self.context),
            "value": cpu(self.value_),
            "doc": cpu(self.doc_),
            "pos": cpu(self.pos_),
            "ctx": cpu(self.ctx_),
        }

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], *, device: torch.device | str | None = None
    ) -> TopK:
        check_state(state, "TopK")
        self = cls(state["n_units"], k=state["k"], context=state["context"], device=device)
        want = (self.n_units, self.k)
        if tuple(state["value"].shape) != want or tuple(state["ctx"].shape[:2]) != want:
            raise AccumulatorError(
                f"TopK state is inconsistent: expected (unit, k) = {want} tensors, got "
                f"{tuple(state['value'].shape)}. The state is corrupted; recompute it."
            )
        dev = self.device
        self.value_ = state["value"].to(dev, torch.float64).clone()
        self.doc_ = state["doc"].to(dev, torch.int64).clone()
        self.pos_ = state["pos"].to(dev, torch.int64).clone()
        self.ctx_ = state["ctx"].to(dev, torch.float32).clone()
        return self

    # --- results ---

    def exemplars(self) -> dict[str, np.ndarray]:
        """The exemplars as columns, one row per (unit, rank), sorted by unit then rank.

        Returns:
            ``unit`` int32, ``rank`` int32 (0 = strongest), ``activation`` float32, ``doc``
            int64, ``pos`` int32, ``ctx_start`` int32 (``pos - context``, the position of the
            first context slot) and ``ctx_acts`` ``(rows, 2 * context + 1)`` float32. Units with
            fewer than ``k`` finite values have fewer rows.
        """
        value = self.value_.cpu()
        filled = value > float("-inf")
        unit, rank = torch.nonzero(filled, as_tuple=True)
        pos = self.pos_.cpu()[unit, rank]
        return {
            "unit": unit.numpy().astype(np.int32),
            "rank": rank.numpy().astype(np.int32),
            "activation": value[unit, rank].numpy().astype(np.float32),
            "doc": self.doc_.cpu()[unit, rank].numpy().astype(np.int64),
            "pos": pos.numpy().astype(np.int32),
            "ctx_start": (pos - self.context).numpy().astype(np.int32),
            "ctx_acts": self.ctx_.cpu()[unit, rank].numpy().astype(np.float32),
        }

    def result(self) -> dict[str, np.ndarray]:
        """Per-unit columns: none (the exemplars are a table of their own, :meth:`exemplars`)."""
        return {}
