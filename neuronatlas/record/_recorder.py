"""The Recorder: forward hooks that hand each site's activations out after a forward pass."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from neuronatlas.errors import RecordingError
from neuronatlas.record import _attention, _capture
from neuronatlas.sites import Site, resolve_sites

__all__ = ["Recorder"]


class _StopForward(BaseException):
    """Raised from the hook of the last site to skip the rest of a forward pass.

    A ``BaseException`` so that ``except Exception`` blocks inside model code let it through;
    :meth:`Recorder.run` catches it (only its own).
    """

    def __init__(self, recorder: Recorder) -> None:
        super().__init__("forward pass stopped after the last recorded site")
        self.recorder = recorder


class Recorder:
    """Record the activations of sites of a model, one forward pass at a time.

    Hooks are attached when the ``with`` block is entered and always removed when it is left,
    also on exceptions and ``KeyboardInterrupt``. A hook only keeps a detached reference to
    the tensor it sees (no arithmetic, no copy, no host sync); the reshaping is done by
    :meth:`pop`, after the forward pass. Recording does not change the model's outputs, with
    one documented exception: ``:attn`` sites need the attention probabilities, which fused
    kernels never materialize, so the Hugging Face models holding them are switched to eager
    attention for the duration of the block and switched back on exit (the eager path gives
    the same numbers up to floating-point rounding).

    Args:
        model: any ``nn.Module`` (a Hugging Face model or a hand-written one).
        sites: a site spec for :func:`~neuronatlas.sites.resolve_sites` (names, globs,
            presets) or already-resolved :class:`~neuronatlas.sites.Site` objects.
        stop_after_last: inside :meth:`run`, end the forward pass as soon as every site has
            been recorded (the rest of the model is skipped: a cheap way to map early layers).
            A direct ``model(...)`` call always runs the full forward pass.
        clone: copy each tensor in the hook. Only needed when the model later modifies a
            recorded tensor in place (e.g. ``nn.ReLU(inplace=True)`` after a recorded
            convolution); without it such a site raises :class:`RecordingError` on
            :meth:`pop` instead of handing out the modified values.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> with Recorder(model, "1, 2:input") as rec:
        ...     _ = model(torch.randn(3, 4))
        ...     acts = rec.pop()            # {site name: (batch, pos, unit)}
        >>> {name: tuple(a.shape) for name, a in acts.items()}
        {'1': (3, 1, 8), '2:input': (3, 1, 8)}
        >>> bool(torch.equal(acts["1"], acts["2:input"]))
        True
        >>> len(model[1]._forward_hooks), len(model[2]._forward_pre_hooks)  # removed on exit
        (0, 0)
    """

    def __init__(
        self,
        model: nn.Module,
        sites: str | Site | Sequence[str | Site],
        *,
        stop_after_last: bool = False,
        clone: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise RecordingError(
                f"Recorder needs a torch.nn.Module; got {type(model).__name__}. Pass the model "
                "itself (for a Hugging Face pipeline, its .model)."
            )
        self.model = model
        self.sites: list[Site] = resolve_sites(model, sites)
        self.stop_after_last = bool(stop_after_last)
        self.clone = bool(clone)
        modules = dict(model.named_modules())
        self._modules = {s.name: modules[s.module] for s in self.sites}
        self._channels_first = {
            name: isinstance(m, _capture.CHANNELS_FIRST_1D) for name, m in self._modules.items()
        }
        self._handles: list[RemovableHandle] = []
        self._attn_state: _attention.AttnState | None = None
        self._stash: dict[str, tuple[Tensor, int | None]] = {}
        self._active = False
        self._running = 0  # depth of run() calls: stopping early only happens inside run()

    # ------------------------------------------------------------------ context management

    def __enter__(self) -> Recorder:
        if self._active:
            raise RecordingError("This Recorder is already active; a Recorder can be entered once.")
        self._stash = {}
        try:
            attn = [s.module for s in self.sites if s.hook == "attn"]
            if attn:
                self._attn_state = _attention.switch_to_eager(self.model, attn)
            for site in self.sites:
                self._attach(site)
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
        state, self._attn_state = self._attn_state, None
        try:
            for handle in handles:
                handle.remove()
        finally:
            if state is not None:
                _attention.restore(state)

    # ------------------------------------------------------------------------------- hooks

    def _put(self, name: str, t: Tensor) -> None:
        if name in self._stash:
            raise RecordingError(
                f"Site {name!r}: its module ran a second time before rec.pop(). Call "
                "rec.pop() after every forward pass; a module that runs several times in one "
                "pass (shared across layers, or called in a loop) cannot be told apart by a "
                "hook, so record a module that runs once instead."
            )
        t = t.detach()
        if self.clone:
            t = t.clone()
        self._stash[name] = (t, None if t.is_inference() else t._version)
        if self._running and self.stop_after_last and len(self._stash) == len(self.sites):
            raise _StopForward(self)

    def _attach(self, site: Site) -> None:
        module, name = self._modules[site.name], site.name
        if site.hook == "input":

            def pre_hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                self._put(name, _capture.take_input(name, args, kwargs))

            self._handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
            return

        if site.hook == "attn":
            if isinstance(module, nn.MultiheadAttention):
                self._handles.append(
                    module.register_forward_pre_hook(_attention.mha_pre_hook, with_kwargs=True)
                )

            def attn_hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
                self._put(
                    name, _capture.take_attn(name, output, hint=lambda: self._attn_hint(site))
                )

            self._handles.append(module.register_forward_hook(attn_hook))
            return

        def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            self._put(name, _capture.take_output(name, output))

        self._handles.append(module.register_forward_hook(hook))

    def _attn_hint(self, site: Site) -> str:
        impl = _attention.implementation_of(self.model, site.module)
        cls = type(self._modules[site.name]).__name__
        if impl is None:
            return (
                f"{cls} is not a Hugging Face attention module; record a module that returns "
                "(output, probabilities), or use nn.MultiheadAttention."
            )
        if impl != "eager":
            return (
                f"Its model still runs attention implementation {impl!r} (it could not be "
                "switched after loading): load it with attn_implementation='eager'."
            )
        return (
            f"The model runs eager attention, but {cls} does not return its probabilities: "
            "check that this is the self-attention module (see the 'attn' preset)."
        )

    # ------------------------------------------------------------------------- results

    def pop(self, *, allow_missing: bool = False) -> dict[str, Tensor]:
        """Hand out the activations of the last forward pass and clear them.

        Args:
            allow_missing: leave out sites whose module did not run, instead of raising.

        Returns:
            ``{site name: tensor}`` in site order: ``(batch, pos, unit)`` activations (see
            :func:`~neuronatlas.record._capture.to_bpu`), or ``(batch, head, q, k)``
            attention probabilities for ``:attn`` sites. Tensors are detached and stay on the
            model's device, in the model's dtype.

        Raises:
            RecordingError: a site's module did not run during the forward pass, or the
                model modified a recorded tensor in place after the hook saw it.
        """
        stash, self._stash = self._stash, {}
        missing = [s.name for s in self.sites if s.name not in stash]
        if missing and not allow_missing:
            what = (
                "No site was recorded: call the model inside the `with Recorder(...)` block "
                "before rec.pop()"
                if len(missing) == len(self.sites)
                else f"These sites' modules did not run in the forward pass: {missing}"
            )
            raise RecordingError(
                f"{what}. Expected one activation per site since the last pop. A module can be "
                "skipped by the model's control flow (e.g. a decoder not called, an optional "
                "branch); pass allow_missing=True to leave such sites out."
            )
        out: dict[str, Tensor] = {}
        for site in self.sites:
            if site.name not in stash:
                continue
            t, version = stash[site.name]
            if version is not None and t._version != version:
                raise RecordingError(
                    f"Site {site.name!r}: the model modified this tensor in place after it was "
                    "recorded (e.g. an in-place activation such as nn.ReLU(inplace=True)), so "
                    "the stored values are not what the module produced. Use "
                    "Recorder(..., clone=True), or record the module after the in-place op."
                )
            if site.hook == "attn":
                out[site.name] = t
            else:
                cf = self._channels_first[site.name]
                out[site.name] = _capture.to_bpu(t, channels_first=cf)
        return out

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` (usually the model) and return its result.

        With ``stop_after_last=True`` the forward pass ends as soon as every site has been
        recorded, and ``None`` is returned instead of the model's output.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
            >>> with Recorder(model, "0", stop_after_last=True) as rec:
            ...     print(rec.run(model, torch.randn(3, 4)))
            ...     print(tuple(rec.pop()["0"].shape))
            None
            (3, 1, 8)
        """
        if not self._active:
            raise RecordingError(
                "rec.run() needs an active Recorder: use it inside `with Recorder(model, sites) "
                "as rec:`."
            )
        self._running += 1
        try:
            return fn(*args, **kwargs)
        except _StopForward as stop:
            if stop.recorder is not self:
                raise
            return None
        finally:
            self._running -= 1

    def __repr__(self) -> str:
        names = [s.name for s in self.sites]
        shown = ", ".join(names[:4]) + (f", ... ({len(names)} sites)" if len(names) > 4 else "")
        state = "active" if self._active else "inactive"
        return f"Recorder({type(self.model).__name__}, [{shown}], {state})"
