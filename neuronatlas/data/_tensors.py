"""Batches for plain ``nn.Module``s fed tensors, tuples of tensors or dicts of keyword tensors."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from neuronatlas.data._batch import Batch
from neuronatlas.errors import DataError

__all__ = ["tensor_batches"]

DEFAULT_BATCH_SIZE = 32


def tensor_batches(data: Any, *, batch_size: int | None = None) -> Iterator[Batch]:
    """Wrap model inputs given as tensors into :class:`Batch` es with ``(doc, pos)`` bookkeeping.

    ``data`` is one of:

    - a tensor ``(N, ...)``: split along dim 0 into batches of ``batch_size`` rows (default 32),
      each called as ``model(x)``;
    - a dict of tensors with the same first dimension: split the same way, called as
      ``model(**batch)``;
    - an iterable (list, tuple, generator, ``DataLoader``) of items, each a tensor (``model(x)``),
      a tuple or list of tensors (``model(*item)``) or a dict (``model(**item)``). Items keep
      their size; with ``batch_size`` set, items larger than it are split (never merged).

    Bookkeeping: ``doc`` is the running row index over all batches (0, 1, 2, … in order), so
    every row is its own sequence. When a batch carries ``input_ids`` (a dict item), they define
    the tokens: ``doc``, ``pos``, ``mask`` and ``token_id`` are ``(batch, seq)``, ``pos`` counts
    ``0 .. seq-1`` and ``mask`` is ``attention_mask`` (all True without one). Otherwise they
    are ``(batch, 1)`` with ``mask`` all True and ``token_id`` None: the activation's own
    positions (sequence positions of a ``(batch, seq, unit)`` output, spatial locations of a conv
    map) are counted with :func:`bookkeeping_for`, which broadcasts ``doc`` and ``mask`` and sets
    ``pos = 0 .. n_pos-1``.

    Args:
        data: the inputs, as above.
        batch_size: rows per batch when splitting (see above).

    Yields:
        One :class:`Batch` per model call, on the device of its inputs.

    Raises:
        DataError: an item is not a tensor, tuple/list of tensors or dict of tensors; tensors of
            one item disagree on the number of rows; an item has no tensor; or a tensor is
            0-dimensional.

    Examples:
        >>> import torch
        >>> [b.doc[:, 0].tolist() for b in tensor_batches(torch.zeros(5, 3), batch_size=2)]
        [[0, 1], [2, 3], [4]]
        >>> ids = torch.tensor([[5, 6, 0], [7, 0, 0]])
        >>> b = next(tensor_batches([{"input_ids": ids, "attention_mask": (ids > 0).long()}]))
        >>> b.n_tokens, b.pos[0].tolist()
        (3, [0, 1, 2])
    """
    if batch_size is not None and (
        not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
    ):
        raise DataError(f"batch_size must be an int >= 1 or None; got {batch_size!r}.")
    if isinstance(data, (Tensor, Mapping)):
        items: Iterable[Any] = [data]
        batch_size = batch_size or DEFAULT_BATCH_SIZE
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        items = data
    else:
        raise DataError(
            "tensor_batches expects a tensor, a dict of tensors, or an iterable of tensors, "
            f"tuples of tensors or dicts of tensors; got {type(data).__name__}."
        )
    return _generate(items, batch_size)


def _generate(items: Iterable[Any], batch_size: int | None) -> Iterator[Batch]:
    row = 0
    for i, item in enumerate(items):
        args, kwargs = _split_call(item, i)
        rows = _rows(args, kwargs, i)
        step = batch_size or rows
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            if start == 0 and stop == rows:
                a, k = args, kwargs
            else:
                a = tuple(_slice(x, start, stop) for x in args)
                k = {key: _slice(x, start, stop) for key, x in kwargs.items()}
            yield _bookkeep(a, k, row)
            row += stop - start


def _split_call(item: Any, i: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(item, Tensor):
        return (item,), {}
    if isinstance(item, Mapping):
        if not all(isinstance(k, str) for k in item):
            raise DataError(f"Item {i} is a dict with non-string keys; expected keyword names.")
        return (), dict(item)
    if isinstance(item, (tuple, list)):
        return tuple(item), {}
    raise DataError(
        f"Item {i} is a {type(item).__name__}; expected a tensor, a tuple/list of tensors "
        "(positional inputs) or a dict of tensors (keyword inputs)."
    )


def _rows(args: tuple[Any, ...], kwargs: dict[str, Any], i: int) -> int:
    tensors = [x for x in (*args, *kwargs.values()) if isinstance(x, Tensor)]
    if not tensors:
        raise DataError(f"Item {i} holds no tensor; expected at least one input tensor.")
    if any(t.dim() == 0 for t in tensors):
        raise DataError(f"Item {i} holds a 0-dimensional tensor; expected (batch, ...) inputs.")
    sizes = {int(t.shape[0]) for t in tensors}
    if len(sizes) != 1:
        shapes = [tuple(t.shape) for t in tensors]
        raise DataError(
            f"The tensors of item {i} disagree on the batch size (dim 0): shapes {shapes}. "
            "Expected every input of one call to have the same number of rows."
        )
    return sizes.pop()


def _slice(x: Any, start: int, stop: int) -> Any:
    return x[start:stop] if isinstance(x, Tensor) else x


def _bookkeep(args: tuple[Any, ...], kwargs: dict[str, Any], row: int) -> Batch:
    ids = kwargs.get("input_ids")
    if isinstance(ids, Tensor) and ids.dim() == 2:
        rows, seq = ids.shape
        device = ids.device
        att = kwargs.get("attention_mask")
        if isinstance(att, Tensor):
            if tuple(att.shape) != (rows, seq):
                raise DataError(
                    f"attention_mask has shape {tuple(att.shape)}; expected the shape of "
                    f"input_ids {(rows, seq)}."
                )
            mask = att.to(device=device).bool()
        else:
            mask = torch.ones(rows, seq, dtype=torch.bool, device=device)
        doc = torch.arange(row, row + rows, device=device).unsqueeze(1).expand(rows, seq)
        pos = torch.arange(seq, device=device).expand(rows, seq)
        return Batch(args, kwargs, doc, pos, mask, ids.long())
    first = next(x for x in (*args, *kwargs.values()) if isinstance(x, Tensor))
    rows, device = int(first.shape[0]), first.device
    doc = torch.arange(row, row + rows, device=device).unsqueeze(1)
    pos = torch.zeros(rows, 1, dtype=torch.int64, device=device)
    mask = torch.ones(rows, 1, dtype=torch.bool, device=device)
    return Batch(args, kwargs, doc, pos, mask, None, _n_tokens=rows)


TENSOR_SUFFIXES = (".pt", ".pth", ".npy", ".npz", ".safetensors")


def load_tensors(path: str | os.PathLike[str]) -> Any:
    """Read model inputs for a plain ``nn.Module`` from a file, for :func:`tensor_batches`.

    - ``.pt`` / ``.pth``: anything ``torch.load(weights_only=True)`` reads — a tensor (split into
      batches), a list of tensors, tuples or dicts of tensors (one batch each);
    - ``.npy``: one array; ``.npz`` and ``.safetensors``: one array/tensor, or several, which
      become keyword inputs named by their keys.

    Raises:
        DataError: the file is missing, has another suffix, or cannot be read.

    Examples:
        >>> import tempfile, torch
        >>> p = tempfile.mkdtemp() + "/x.pt"
        >>> torch.save(torch.zeros(4, 3), p)
        >>> load_tensors(p).shape
        torch.Size([4, 3])
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Input file {str(p)!r} does not exist (or is not a file).")
    suffix = p.suffix.lower()
    if suffix not in TENSOR_SUFFIXES:
        raise DataError(
            f"Cannot read model inputs from {str(p)!r}: expected one of {', '.join(TENSOR_SUFFIXES)}, "
            f"got {suffix or 'no suffix'!r}. Save the inputs with torch.save or numpy.save."
        )
    try:
        if suffix in (".pt", ".pth"):
            return torch.load(p, map_location="cpu", weights_only=True)
        if suffix == ".npy":
            return torch.from_numpy(np.load(p, allow_pickle=False))
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                found = {k: torch.from_numpy(z[k]) for k in z.files}
        else:
            from safetensors.torch import load_file

            found = load_file(str(p))
    except Exception as exc:
        raise DataError(f"Cannot read model inputs from {str(p)!r}: {exc}") from exc
    if len(found) == 1:
        return next(iter(found.values()))
    return _KeywordInputs(found)


class _KeywordInputs:
    """Several named input tensors of one length: batched together as keyword inputs."""

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        lengths = {k: int(v.shape[0]) for k, v in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise DataError(
                f"The named inputs must have the same number of rows to be batched together; "
                f"got {lengths}."
            )
        self.tensors = dict(tensors)
        self.n = next(iter(lengths.values()))

    def batches(self, batch_size: int) -> list[dict[str, Tensor]]:
        return [
            {k: v[i : i + batch_size] for k, v in self.tensors.items()}
            for i in range(0, self.n, batch_size)
        ]
