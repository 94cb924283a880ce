"""Read activations out of what a hooked module receives or returns, and bring them to shape.

Two halves, kept apart on purpose: the *take* functions run inside forward hooks and only pick
a tensor and check its type (no arithmetic, no copies, no host syncs); :func:`to_bpu` runs
after the forward pass and does the reshaping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from neuronatlas.errors import RecordingError

__all__ = ["describe", "first_tensor", "take_attn", "take_input", "take_output", "to_bpu"]

# Modules whose 3-D tensors are (batch, channel, length): their channels are the units.
CHANNELS_FIRST_1D: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.ConvTranspose1d,
    nn.BatchNorm1d,
    nn.InstanceNorm1d,
    nn.MaxPool1d,
    nn.AvgPool1d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveAvgPool1d,
    nn.LPPool1d,
)

# Keyword names tried, in order, when a module is called without positional arguments.
_INPUT_KWARGS = ("hidden_states", "input", "x", "inputs_embeds", "query", "src")


def describe(x: Any, depth: int = 0) -> str:
    """A short human description of what a module passed or returned, for error messages."""
    if isinstance(x, Tensor):
        return f"Tensor{tuple(x.shape)} {x.dtype}"
    if x is None:
        return "None"
    if isinstance(x, tuple | list) and depth == 0:
        inner = ", ".join(describe(v, 1) for v in x[:4]) + (", ..." if len(x) > 4 else "")
        return f"{type(x).__name__} of {len(x)} ({inner})"
    if isinstance(x, Mapping) and depth == 0:
        keys = list(x.keys())
        return f"{type(x).__name__} with keys {keys[:6]}{'...' if len(keys) > 6 else ''}"
    return type(x).__name__


def first_tensor(x: Any) -> Tensor | None:
    """``x`` itself if a tensor, else the first tensor in a tuple, list or mapping (such as a
    Hugging Face ``ModelOutput``, whose ``values()`` skips ``None`` fields), else ``None``."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, Mapping):
        values: Any = x.values()
    elif isinstance(x, tuple | list):
        values = x
    else:
        return None
    return next((v for v in values if isinstance(v, Tensor)), None)


def _check(site: str, t: Tensor | None, came: Any, what: str) -> Tensor:
    if t is None:
        raise RecordingError(
            f"Site {site!r}: expected the module's {what} to be a tensor (or a tuple/ModelOutput "
            f"holding one); got {describe(came)}. Record a sub-module that returns a tensor, "
            "or use ':input' to record what the module receives."
        )
    if not (t.is_floating_point() or t.is_complex()):
        raise RecordingError(
            f"Site {site!r}: expected floating-point activations; the module's {what} is "
            f"{describe(t)} (ids or indices, not unit activations). Record the module that "
            "consumes them instead (e.g. the output of an embedding)."
        )
    if t.dim() == 0:
        raise RecordingError(
            f"Site {site!r}: the module's {what} is a scalar ({describe(t)}); expected "
            "(batch, unit), (batch, pos, unit) or a (batch, channel, ...) feature map."
        )
    return t


def take_output(site: str, output: Any) -> Tensor:
    """The tensor an output hook records: the output, or its first tensor."""
    return _check(site, first_tensor(output), output, "output")


def take_input(site: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor:
    """The tensor an input hook records: the first positional argument, or (for a call with
    keywords only) the first of ``hidden_states, input, x, inputs_embeds, query, src`` present,
    else the first tensor keyword argument."""
    if args:
        came: Any = args[0]
        t = first_tensor(came)
    else:
        came = kwargs
        key = next((k for k in _INPUT_KWARGS if isinstance(kwargs.get(k), Tensor)), None)
        t = kwargs[key] if key is not None else first_tensor(kwargs)
    return _check(site, t, came, "first input")


def take_attn(site: str, output: Any, *, hint: Callable[[], str] | None = None) -> Tensor:
    """The attention probabilities in an attention module's output.

    Hugging Face attention modules return ``(attn_output, attn_weights, ...)``; some return
    extra 4-D tensors before the weights (T5: ``(out, position_bias, weights)``), so the *last*
    4-D floating tensor after the first element is taken. ``nn.MultiheadAttention`` returns
    ``(out, weights)`` with 3-D weights for unbatched input; those get a batch axis of 1.
    """
    items: Any = output.to_tuple() if hasattr(output, "to_tuple") else output
    if not isinstance(items, tuple | list):
        items = ()
    found = [
        v
        for v in items[1:]
        if isinstance(v, Tensor) and v.is_floating_point() and v.dim() in (3, 4)
    ]
    four = [v for v in found if v.dim() == 4]
    t = four[-1] if four else (found[-1][None] if found else None)
    if t is None:
        raise RecordingError(
            f"Site {site!r}: expected the attention module to return its attention "
            f"probabilities (batch, head, q, k) after its output; got {describe(output)}. "
            f"{hint() if hint is not None else ''}".rstrip()
        )
    return t


def to_bpu(t: Tensor, *, channels_first: bool = False) -> Tensor:
    """Bring one recorded tensor to ``(batch, pos, unit)`` (a view where possible).

    - ``(unit,)`` → ``(1, 1, unit)``; ``(batch, unit)`` → ``(batch, 1, unit)``;
    - ``(batch, pos, unit)`` as is, or ``(batch, unit, pos)`` → ``(batch, pos, unit)`` when
      ``channels_first`` (1-D convolutions, pooling and norms);
    - ``(batch, C, *spatial)`` feature maps → ``(batch, prod(spatial), C)``: units are channels,
      positions the spatial locations in row-major order (``pos = h * W + w`` for 2-D maps).

    Examples:
        >>> to_bpu(torch.zeros(2, 3, 4, 5)).shape
        torch.Size([2, 20, 3])
    """
    d = t.dim()
    if d == 1:
        return t[None, None, :]
    if d == 2:
        return t[:, None, :]
    if d == 3:
        return t.transpose(1, 2) if channels_first else t
    return torch.movedim(t, 1, -1).flatten(1, -2)
