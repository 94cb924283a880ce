"""Find the edited tensor in what a module receives or returns, and put a new one back.

The tensor chosen is the one :mod:`neuronatlas.record._capture` records, so an edit sees
exactly what a :class:`~neuronatlas.record.Recorder` would hand out for the same site. The
edit works in ``(batch, pos, unit)`` layout; :func:`from_bpu` undoes :func:`to_bpu`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from neuronatlas.record._capture import _INPUT_KWARGS, describe

__all__ = ["from_bpu", "replace_input", "replace_output"]

Replace = Callable[[Tensor], Tensor]


def from_bpu(new: Tensor, like: Tensor, *, channels_first: bool = False) -> Tensor:
    """Bring a ``(batch, pos, unit)`` tensor back to the layout of ``like`` (inverse of
    :func:`~neuronatlas.record._capture.to_bpu`).

    Examples:
        >>> from neuronatlas.record import to_bpu
        >>> x = torch.randn(2, 3, 4, 5)
        >>> bool(torch.equal(from_bpu(to_bpu(x), x), x))
        True
    """
    d = like.dim()
    if d == 1:
        return new[0, 0]
    if d == 2:
        return new[:, 0]
    if d == 3:
        return new.transpose(1, 2) if channels_first else new
    b, c, *spatial = like.shape
    return torch.movedim(new.reshape(b, *spatial, c), -1, 1)


def _replace_in(x: Any, fn: Replace) -> tuple[Any, bool]:
    """``x`` with its first tensor replaced by ``fn(tensor)``, and whether one was found.

    Tensors are replaced as such; tuples and lists are rebuilt with the same type; a
    Hugging Face ``ModelOutput`` is updated in place (its fields and items stay in sync);
    other mappings are copied.
    """
    if isinstance(x, Tensor):
        return fn(x), True
    if isinstance(x, Mapping):
        key = next((k for k, v in x.items() if isinstance(v, Tensor)), None)
        if key is None:
            return x, False
        if hasattr(x, "to_tuple"):  # ModelOutput: __setitem__ also sets the attribute
            x[key] = fn(x[key])
            return x, True
        out = dict(x)
        out[key] = fn(x[key])
        return (type(x)(out) if type(x) is not dict else out), True  # type: ignore[call-arg]
    if isinstance(x, tuple | list):
        i = next((i for i, v in enumerate(x) if isinstance(v, Tensor)), None)
        if i is None:
            return x, False
        items = list(x)
        items[i] = fn(items[i])
        if isinstance(x, list):
            return items, True
        return (type(x)(*items) if hasattr(x, "_fields") else type(x)(items)), True
    return x, False


def replace_output(output: Any, fn: Replace) -> Any:
    """The module's output with its first tensor replaced by ``fn(tensor)``."""
    new, found = _replace_in(output, fn)
    if not found:
        raise TypeError(describe(output))
    return new


def replace_input(
    args: tuple[Any, ...], kwargs: dict[str, Any], fn: Replace
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` with the module's first input replaced by ``fn(tensor)``.

    The first input is the first positional argument (or the first tensor inside it), or for a
    call with keywords only the first of ``hidden_states, input, x, inputs_embeds, query, src``
    present, else the first tensor keyword argument (as the Recorder chooses it).
    """
    if args:
        first, found = _replace_in(args[0], fn)
        if not found:
            raise TypeError(describe(args[0]))
        return (first, *args[1:]), kwargs
    key = next((k for k in _INPUT_KWARGS if isinstance(kwargs.get(k), Tensor)), None)
    if key is None:
        key = next((k for k, v in kwargs.items() if isinstance(v, Tensor)), None)
    if key is None:
        raise TypeError(describe(kwargs))
    return args, {**kwargs, key: fn(kwargs[key])}
