"""Batches for the taxonomy's own passes: Batch objects, or model inputs numbered in one run."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from neuronatlas.errors import DataError

__all__ = ["as_batches"]


def as_batches(items: Iterable[Any]) -> Iterator[Any]:
    """Yield :class:`~neuronatlas.data.Batch` es from ``items``.

    ``Batch`` objects (from ``text_batches`` / ``tensor_batches``) pass through; model inputs
    (tensors, tuples, dicts with ``input_ids``) go through a single ``tensor_batches`` call, so
    their doc ids run on from batch to batch instead of restarting at 0.

    Raises:
        DataError: ``Batch`` objects and raw inputs are mixed.

    Examples:
        >>> import torch
        >>> [b.doc[:, 0].tolist() for b in as_batches([torch.zeros(2, 3), torch.zeros(1, 3)])]
        [[0, 1], [2]]
    """
    from neuronatlas.data import Batch, tensor_batches

    it = iter(items)
    first = next(it, None)
    if first is None:
        return
    wrapped = isinstance(first, Batch)

    def checked() -> Iterator[Any]:
        yield first
        for item in it:
            if isinstance(item, Batch) != wrapped:
                raise DataError(
                    "Got both Batch objects and raw model inputs in one stream of batches; "
                    "pass either Batches (text_batches, tensor_batches) or inputs only."
                )
            yield item

    yield from checked() if wrapped else tensor_batches(checked())
