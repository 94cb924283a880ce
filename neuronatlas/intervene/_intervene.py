"""``intervene``: edit activations at sites for the duration of a ``with`` block."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from neuronatlas.intervene import _layout
from neuronatlas.intervene._errors import InterventionError
from neuronatlas.record._capture import CHANNELS_FIRST_1D, describe, to_bpu
from neuronatlas.sites import Site, resolve_sites

__all__ = ["EditContext", "EditFn", "Intervention", "intervene"]


@dataclass(frozen=True)
class EditContext:
    """What an edit knows about the call it is applied in.

    Attributes:
        site: the site being edited.
        call: 0-based index of this site's call inside the ``with`` block. With ``generate``
            and a KV cache, call 0 is the prompt and each later call one new token.
        positions: ``(pos,)`` int64 tensor (on the activation's device): the absolute position
            of each index of the activation's ``pos`` axis. When the sequence grows through a
            KV cache these continue after the positions seen by earlier calls (taken from the
            model's ``cache_position`` argument, or the length of the KV cache it is passed as
            ``cache`` / ``past_key_values``); without a cache,
            ``arange(pos)``. With left padding, pad positions are counted.
        n_prompt: the prompt length: positions ``< n_prompt`` are prompt positions. It is the
            length of the first call of the current sequence (a call starting at position 0),
            unless ``intervene(..., n_prompt=...)`` fixed it.
    """

    site: Site
    call: int
    positions: Tensor
    n_prompt: int

    @property
    def is_prompt(self) -> Tensor:
        """``(pos,)`` bool: which positions belong to the prompt."""
        return self.positions < self.n_prompt


class EditFn(Protocol):
    """An edit: ``fn(t, ctx)`` gets the site's activation ``t`` in ``(batch, pos, unit)``
    layout and returns the new activation of the same shape, or ``None`` to keep ``t``."""

    def __call__(self, t: Tensor, ctx: EditContext, /) -> Tensor | None: ...


def _past_length(past: Any) -> int:
    """Number of positions held by a KV cache (a ``Cache`` object or legacy tuples)."""
    if past is None:
        return 0
    if hasattr(past, "get_seq_length"):
        return int(past.get_seq_length())
    try:
        return int(past[0][0].shape[-2])
    except (TypeError, IndexError, AttributeError):
        return 0


class Intervention:
    """Hooks that edit sites' activations while a ``with`` block runs (see :func:`intervene`)."""

    def __init__(
        self,
        model: nn.Module,
        edits: Mapping[str | Site, EditFn | Callable[..., Tensor | None]],
        *,
        n_prompt: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InterventionError(
                f"intervene needs a torch.nn.Module; got {type(model).__name__}. Pass the model "
                "itself (for a Hugging Face pipeline, its .model)."
            )
        if not isinstance(edits, Mapping) or not edits:
            raise InterventionError(
                f"intervene needs a non-empty mapping {{site spec: edit}}; got {edits!r}. "
                "Example: intervene(model, {'transformer.h.3': add(vector, coef=4.0)})."
            )
        if n_prompt is not None and (not isinstance(n_prompt, int) or n_prompt < 0):
            raise InterventionError(f"n_prompt must be an int >= 0 or None; got {n_prompt!r}.")
        self.model = model
        self.n_prompt = n_prompt
        modules = dict(model.named_modules())
        self._edits: list[tuple[Site, nn.Module, Callable[..., Tensor | None]]] = []
        seen: dict[str, str] = {}
        for spec, fn in edits.items():
            if not callable(fn):
                raise InterventionError(
                    f"The edit for {spec!r} must be callable as fn(t, ctx); got "
                    f"{type(fn).__name__}. Use a ready-made edit such as add(vector) or zero()."
                )
            for site in resolve_sites(model, spec if isinstance(spec, Site) else str(spec)):
                if site.hook == "attn":
                    raise InterventionError(
                        f"Site {site.name!r}: ':attn' sites (attention probabilities) cannot be "
                        "edited here. Edit the attention output instead, e.g. the input of its "
                        "output projection with the heads(...) adapter."
                    )
                if site.name in seen:
                    raise InterventionError(
                        f"Site {site.name!r} is edited twice (by {seen[site.name]!r} and "
                        f"{spec!r}). Give each site one edit; compose several in one function."
                    )
                seen[site.name] = str(spec)
                self._edits.append((site, modules[site.module], fn))
        self._handles: list[RemovableHandle] = []
        self._root: tuple[Tensor | None, int] | None = None
        self._calls: dict[str, int] = {}
        self._prompt: dict[str, int] = {}
        self._active = False

    @property
    def sites(self) -> list[Site]:
        """The edited sites, in the order given."""
        return [s for s, _, _ in self._edits]

    # ------------------------------------------------------------------ context management

    def __enter__(self) -> Intervention:
        if self._active:
            raise InterventionError("This intervention is already active; enter it once.")
        self._calls, self._prompt, self._root = {}, {}, None
        try:
            self._handles.append(
                self.model.register_forward_pre_hook(self._root_pre, with_kwargs=True)
            )
            self._handles.append(
                self.model.register_forward_hook(self._root_post, always_call=True)
            )
            for site, module, fn in self._edits:
                self._attach(site, module, fn)
        except BaseException:
            self._detach()
            raise
        self._active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._active = False
        self._detach()

    def _detach(self) -> None:
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()
        self._root = None

    # ------------------------------------------------------------------------------- hooks

    def _root_pre(self, mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        cache_position = kwargs.get("cache_position")
        if not (isinstance(cache_position, Tensor) and cache_position.dim() == 1):
            cache_position = None
        past = kwargs.get("past_key_values", kwargs.get("cache"))
        # the first absolute position of this call, read once per model call (one host sync)
        start = (
            int(cache_position[0])
            if cache_position is not None and cache_position.numel()
            else _past_length(past)
        )
        self._root = (cache_position, start)

    def _root_post(self, mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self._root = None

    def _context(self, site: Site, t: Tensor) -> EditContext:
        n = t.shape[1]
        root = self._root
        start = root[1] if root is not None else 0
        if root is not None and root[0] is not None and root[0].numel() == n:
            positions = root[0].to(device=t.device, dtype=torch.int64)
        else:
            positions = torch.arange(start, start + n, device=t.device)
        call = self._calls.get(site.name, 0)
        self._calls[site.name] = call + 1
        if n and start == 0:
            self._prompt[site.name] = n  # a new sequence starts here
        n_prompt = self.n_prompt if self.n_prompt is not None else self._prompt.get(site.name, n)
        return EditContext(site=site, call=call, positions=positions, n_prompt=n_prompt)

    def _edit(
        self, site: Site, fn: Callable[..., Tensor | None], raw: Tensor, channels_first: bool
    ) -> Tensor:
        if not isinstance(raw, Tensor) or not raw.is_floating_point() or raw.dim() == 0:
            raise InterventionError(
                f"Site {site.name!r}: expected floating-point activations to edit; the module's "
                f"{'first input' if site.hook == 'input' else 'output'} is {describe(raw)}."
            )
        t = to_bpu(raw, channels_first=channels_first)
        ctx = self._context(site, t)
        new = fn(t, ctx)
        if new is None:
            return raw
        if not isinstance(new, Tensor) or new.shape != t.shape:
            got = describe(new) if not isinstance(new, Tensor) else f"shape {tuple(new.shape)}"
            raise InterventionError(
                f"Site {site.name!r}: the edit {fn!r} must return a tensor of the activation's "
                f"shape (batch, pos, unit) = {tuple(t.shape)} or None; got {got}."
            )
        new = new.to(device=raw.device, dtype=raw.dtype)
        return _layout.from_bpu(new, raw, channels_first=channels_first)

    def _attach(self, site: Site, module: nn.Module, fn: Callable[..., Tensor | None]) -> None:
        cf = isinstance(module, CHANNELS_FIRST_1D)

        def replace(raw: Tensor) -> Tensor:
            return self._edit(site, fn, raw, cf)

        if site.hook == "input":

            def pre_hook(
                mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
            ) -> tuple[tuple[Any, ...], dict[str, Any]]:
                try:
                    return _layout.replace_input(args, kwargs, replace)
                except TypeError as e:
                    raise InterventionError(
                        f"Site {site.name!r}: expected the module's first input to be a tensor "
                        f"(or a tuple holding one); got {e}."
                    ) from None

            self._handles.append(
                module.register_forward_pre_hook(pre_hook, with_kwargs=True, prepend=True)
            )
            return

        def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            try:
                return _layout.replace_output(output, replace)
            except TypeError as e:
                raise InterventionError(
                    f"Site {site.name!r}: expected the module's output to be a tensor (or a "
                    f"tuple/ModelOutput holding one); got {e}. Edit a sub-module that returns a "
                    "tensor, or use ':input'."
                ) from None

        self._handles.append(module.register_forward_hook(hook, prepend=True))

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.sites)
        state = "active" if self._active else "inactive"
        return f"Intervention({type(self.model).__name__}, [{names}], {state})"


def intervene(
    model: nn.Module,
    edits: Mapping[str | Site, EditFn | Callable[..., Tensor | None]],
    *,
    n_prompt: int | None = None,
) -> Intervention:
    """Edit activations at sites while a ``with`` block runs; the hooks are always removed.

    Each edit is a function ``fn(t, ctx)`` of the site's activation ``t`` in ``(batch, pos,
    unit)`` layout (the layout the :class:`~neuronatlas.record.Recorder` hands out for the
    same site: a module's output, or its first input for ``module:input`` sites) and an
    :class:`EditContext`; it returns the new activation (same shape) or ``None`` to keep
    ``t``. The new tensor is put back in the module's output or input in its original layout
    and container (tensor, tuple, ``ModelOutput``, keyword argument), cast to the original
    dtype. Works around ``model(...)`` and around Hugging Face ``model.generate(...)``.

    Edit hooks run before any other hook of the same module, so a Recorder active at the same
    time records the edited activations.

    Args:
        model: any ``nn.Module``.
        edits: ``{site spec: edit}``; a spec is a module name, glob or preset as in
            :func:`~neuronatlas.sites.resolve_sites` (a glob applies the edit to each site it
            matches). ``:attn`` sites cannot be edited.
        n_prompt: fix the prompt length seen by edits (default: the length of the first call
            of each sequence). Needed only for ``generate(..., use_cache=False)``, where every
            step recomputes the whole sequence.

    Returns:
        An :class:`Intervention`, to use as a context manager.

    Raises:
        InterventionError: an edit is not callable, a site is edited twice or is an ``:attn``
            site, or (inside the block) an edit returns a tensor of the wrong shape.
        SiteError: a spec does not resolve on the model.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from neuronatlas.intervene import intervene, zero
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> x = torch.randn(3, 4)
        >>> with intervene(model, {"1": zero()}):
        ...     y = model(x)
        >>> bool(torch.equal(y, model[2](torch.zeros(3, 8))))
        True
        >>> len(model[1]._forward_hooks)  # removed on exit
        0
    """
    return Intervention(model, edits, n_prompt=n_prompt)
