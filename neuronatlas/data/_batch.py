"""The model batch with the bookkeeping of every position: what the recorder and statistics read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from neuronatlas.errors import DataError

if TYPE_CHECKING:
    from neuronatlas.data._text import Window

__all__ = ["Batch", "bookkeeping_for"]


@dataclass
class Batch:
    """One model call and the ``(doc, pos)`` of each of its positions.

    The model is called as ``model(*batch.args, **batch.kwargs)``. The bookkeeping tensors say,
    for each row and position, which sequence (``doc``) and which position in it (``pos``) an
    activation belongs to, and whether it is a real token (``mask``) or padding.

    Attributes:
        args: positional inputs of the model call (tensors, or anything the model takes).
        kwargs: keyword inputs, e.g. ``input_ids``, ``attention_mask``, ``token_type_ids``.
        doc: ``(batch, pos)`` int64 sequence id of each position (see ``docs/architecture.md``:
            one doc is one sequence exactly as the model saw it).
        pos: ``(batch, pos)`` int64 position of each token within its sequence.
        mask: ``(batch, pos)`` bool, True for real tokens, False for padding.
        token_id: ``(batch, pos)`` int64 token ids, or None when the inputs are not tokens.
        windows: for text batches, the :class:`~neuronatlas.data.Window` of each row (its doc id,
            source, token ids, token strings and display text); empty for tensor batches.

    For tensor inputs without tokens, the bookkeeping is ``(batch, 1)``: one entry per row, to be
    broadcast to the positions of each activation with :func:`bookkeeping_for`.

    Examples:
        >>> import torch
        >>> ids = torch.tensor([[101, 7592, 102], [101, 102, 0]])
        >>> b = Batch(
        ...     args=(),
        ...     kwargs={"input_ids": ids, "attention_mask": (ids != 0).long()},
        ...     doc=torch.tensor([[0, 0, 0], [1, 1, 1]]),
        ...     pos=torch.arange(3).expand(2, 3),
        ...     mask=ids != 0,
        ...     token_id=ids,
        ... )
        >>> b.n_tokens, b.n_rows
        (5, 2)
    """

    args: tuple[Any, ...]
    kwargs: dict[str, Tensor]
    doc: Tensor
    pos: Tensor
    mask: Tensor
    token_id: Tensor | None = None
    windows: tuple[Window, ...] = ()
    _n_tokens: int | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape = tuple(self.mask.shape)
        if self.mask.dim() != 2 or self.mask.dtype != torch.bool:
            raise DataError(
                f"Batch.mask must be a (batch, pos) bool tensor; got {self.mask.dtype} "
                f"of shape {shape}."
            )
        for name in ("doc", "pos", "token_id"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != shape:
                raise DataError(
                    f"Batch.{name} must have the shape of Batch.mask {shape}; got {tuple(t.shape)}."
                )

    @property
    def n_rows(self) -> int:
        """Number of rows (sequences or samples) in the batch."""
        return int(self.mask.shape[0])

    @property
    def n_tokens(self) -> int:
        """Number of valid (non-padding) positions; computed once, on the host if possible."""
        if self._n_tokens is None:
            self._n_tokens = int(self.mask.sum())
        return self._n_tokens

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> Batch:
        """Return a copy with every tensor (inputs and bookkeeping) on ``device``.

        Nested tuples, lists and dicts in ``args`` are followed; non-tensors are kept as they are.
        """
        n = self.n_tokens  # counted before the move, so no device sync is needed later

        def move(x: Any) -> Any:
            if isinstance(x, Tensor):
                return x.to(device, non_blocking=non_blocking)
            if isinstance(x, (tuple, list)):
                return type(x)(move(v) for v in x)
            if isinstance(x, dict):
                return {k: move(v) for k, v in x.items()}
            return x

        return dataclasses.replace(
            self,
            args=move(self.args),
            kwargs=move(self.kwargs),
            doc=move(self.doc),
            pos=move(self.pos),
            mask=move(self.mask),
            token_id=move(self.token_id),
            _n_tokens=n,
        )


def bookkeeping_for(batch: Batch, n_pos: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(doc, pos, mask)``, each ``(batch, n_pos)``, for an activation with ``n_pos`` positions.

    Activations are brought to ``(batch, pos, unit)`` by the recorder; this gives the bookkeeping
    that matches them:

    - the batch's positions are ``n_pos`` (token models, e.g. ``input_ids`` of length ``n_pos``):
      the batch's own ``doc``, ``pos`` and ``mask``;
    - the batch has one entry per row (plain tensor inputs) and the activation ``n_pos``
      positions (a sequence or a conv map): every position of row ``i`` belongs to doc
      ``doc[i]``, positions are ``0 .. n_pos - 1``, all valid;
    - the activation has one position (a pooled or 2-D output) but the batch has tokens: one
      entry per row at ``pos`` 0, valid when the row has at least one real token.

    Args:
        batch: the batch the activation was computed from.
        n_pos: number of positions of the activation (its dimension 1 after the recorder's
            reshape to ``(batch, pos, unit)``).

    Returns:
        ``doc`` int64, ``pos`` int64 and ``mask`` bool, each ``(batch, n_pos)``, on the device of
        ``batch.mask``.

    Raises:
        DataError: the activation's positions match neither the batch's positions nor one per row.

    Examples:
        >>> import torch
        >>> from neuronatlas.data import tensor_batches
        >>> b = next(iter(tensor_batches(torch.zeros(2, 8), batch_size=2)))
        >>> doc, pos, mask = bookkeeping_for(b, 3)
        >>> doc.tolist(), pos.tolist(), bool(mask.all())
        ([[0, 0, 0], [1, 1, 1]], [[0, 1, 2], [0, 1, 2]], True)
    """
    rows, have = batch.mask.shape
    if n_pos == have:
        return batch.doc, batch.pos, batch.mask
    if have == 1:
        pos = torch.arange(n_pos, device=batch.mask.device).expand(rows, n_pos)
        return batch.doc.expand(rows, n_pos), pos, batch.mask.expand(rows, n_pos)
    if n_pos == 1:
        return (
            batch.doc[:, :1],
            torch.zeros_like(batch.pos[:, :1]),
            batch.mask.any(dim=1, keepdim=True),
        )
    raise DataError(
        f"An activation with {n_pos} positions cannot be matched to a batch of {have} positions "
        f"per row: expected {have} (one per token), 1 (one per row), or a batch with one entry per "
        "row. Record a site whose output keeps the token positions, or pass inputs without "
        "input_ids so positions are counted per activation."
    )
