"""Make attention modules hand out their probabilities for the duration of a recording.

Fused attention kernels (PyTorch's ``scaled_dot_product_attention``, FlashAttention) never
materialize the ``(batch, head, q, k)`` probabilities. Hugging Face models choose the kernel
from ``config._attn_implementation`` at every forward, and their attention modules return
``(attn_output, attn_weights)`` where the weights are filled only by the ``"eager"``
implementation. So recording attention switches the models that hold attention sites to eager
attention and restores each config's previous setting exactly on exit.
``nn.MultiheadAttention`` is asked for per-head weights through its call arguments instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from neuronatlas.errors import RecordingError

__all__ = [
    "AttnState",
    "eager_attention",
    "implementation_of",
    "mha_pre_hook",
    "restore",
    "switch_to_eager",
]

_INTERNAL = "_attn_implementation_internal"

# (config, previous value) for every config that may be touched
AttnState = list[tuple[Any, Any]]


def _is_hf_model(m: nn.Module) -> bool:
    return callable(getattr(m, "set_attn_implementation", None)) and hasattr(m, "config")


def _configs(root: nn.Module) -> list[Any]:
    """Every Hugging Face config reachable from ``root``'s modules, sub-configs included."""
    seen: dict[int, Any] = {}
    stack = [getattr(m, "config", None) for m in root.modules()]
    while stack:
        cfg = stack.pop()
        if cfg is None or id(cfg) in seen or not hasattr(cfg, _INTERNAL):
            continue
        seen[id(cfg)] = cfg
        stack.extend(getattr(cfg, key, None) for key in getattr(cfg, "sub_configs", {}) or {})
    return list(seen.values())


def _within(path: str, root: str) -> bool:
    return root == "" or path == root or path.startswith(root + ".")


def _has_setting(m: nn.Module) -> bool:
    return _is_hf_model(m) or hasattr(getattr(m, "config", None), _INTERNAL)


def _owners(model: nn.Module, modules: Iterable[str]) -> list[nn.Module]:
    """The outermost modules with an attention-implementation setting that contain ``modules``."""
    wanted = list(modules)
    owners: list[nn.Module] = []
    taken: list[str] = []
    for path, m in model.named_modules():
        if any(_within(path, t) for t in taken) or not _has_setting(m):
            continue
        if any(_within(w, path) for w in wanted):
            owners.append(m)
            taken.append(path)
    return owners


def switch_to_eager(model: nn.Module, modules: Iterable[str]) -> AttnState:
    """Switch the Hugging Face models holding ``modules`` to eager attention.

    Returns the previous setting of every config involved, for :func:`restore`. Models without
    a ``config._attn_implementation`` (plain PyTorch) are left alone.
    """
    owners = _owners(model, modules)
    state: AttnState = [(cfg, getattr(cfg, _INTERNAL)) for o in owners for cfg in _configs(o)]
    try:
        for owner in owners:
            current = owner.config._attn_implementation
            if current == "eager":
                continue
            if _is_hf_model(owner):
                owner.set_attn_implementation("eager")
            else:  # older transformers: the config setter is all there is
                owner.config._attn_implementation = "eager"
    except Exception as exc:
        restore(state)
        raise RecordingError(
            f"Could not switch {type(model).__name__} to eager attention to record attention "
            f"probabilities ({type(exc).__name__}: {exc}). Load the model with "
            "attn_implementation='eager', or drop the ':attn' sites."
        ) from exc
    return state


def restore(state: AttnState) -> None:
    """Put back every config's attention implementation exactly as it was."""
    for cfg, value in state:
        setattr(cfg, _INTERNAL, value)


def implementation_of(model: nn.Module, module: str) -> str | None:
    """The attention implementation the model holding ``module`` runs, if it has a setting."""
    owners = _owners(model, [module])
    return str(owners[0].config._attn_implementation) if owners else None


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Run the Hugging Face models inside ``model`` with eager attention within a block.

    Args:
        model: any module; every Hugging Face model in it is switched, and each config's
            previous setting is restored on exit (also on exceptions).

    Examples:
        >>> from torch import nn
        >>> with eager_attention(nn.Linear(2, 2)) as m:  # plain modules are left alone
        ...     _ = m
    """
    state = switch_to_eager(model, [name for name, _ in model.named_modules()])
    try:
        yield model
    finally:
        restore(state)


def mha_pre_hook(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Forward pre-hook that makes ``nn.MultiheadAttention`` return per-head weights.

    ``forward(query, key, value, key_padding_mask, need_weights, attn_mask,
    average_attn_weights, is_causal)``: ``need_weights`` and ``average_attn_weights`` are set
    wherever the caller passed them (positionally or by keyword).
    """
    positional = list(args)
    for index, key, value in ((4, "need_weights", True), (6, "average_attn_weights", False)):
        if len(positional) > index:
            positional[index] = value
        else:
            kwargs[key] = value
    return tuple(positional), kwargs
