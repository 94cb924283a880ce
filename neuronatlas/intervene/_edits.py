"""Ready-made edits for :func:`~neuronatlas.intervene.intervene`.

Each is a small callable class ``edit(t, ctx) -> Tensor`` on ``(batch, pos, unit)``
activations. Every edit takes ``positions`` (which positions it changes: ``"all"``,
``"prompt"``, ``"generated"``, ``"last_prompt"``, a ``slice`` or a sequence of absolute
positions; negative values count from the end of the current call) and ``units`` (``None`` for
all units, or the unit indices it changes); everything else is left exactly as it was.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from neuronatlas.intervene._errors import InterventionError
from neuronatlas.intervene._intervene import EditContext

__all__ = [
    "Edit",
    "add",
    "heads",
    "mean",
    "patch",
    "project_out",
    "resample",
    "set_subspace",
    "zero",
]

Positions = str | slice | Sequence[int] | Tensor
Units = int | Sequence[int] | Tensor | None
SiteTensors = Tensor | Mapping[str, Tensor]


_NAMED_POSITIONS = ("all", "prompt", "generated", "last_prompt")


def _as_tensor(x: Any, what: str) -> Tensor:
    if isinstance(x, Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError):
            raise InterventionError(
                f"{what} must be a tensor or array; got {type(x).__name__}."
            ) from None
    if not t.is_floating_point():
        t = t.float()
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise InterventionError(f"{what} holds {bad} NaN/Inf value(s); expected finite numbers.")
    return t


def _check_positions(positions: Positions) -> Positions:
    if isinstance(positions, str):
        if positions not in _NAMED_POSITIONS:
            raise InterventionError(
                f"positions must be one of {', '.join(map(repr, _NAMED_POSITIONS))}, a slice or a "
                f"sequence of ints; got {positions!r}."
            )
        return positions
    if isinstance(positions, slice):
        return positions
    try:
        idx = torch.as_tensor(positions, dtype=torch.int64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise InterventionError(
            f"positions must be 'all', 'prompt', 'generated', a slice or a sequence of ints; got "
            f"{type(positions).__name__}."
        ) from None
    return idx


def position_mask(positions: Positions, ctx: EditContext) -> Tensor | None:
    """``(pos,)`` bool mask of the positions selected in this call, or ``None`` for all.

    Non-negative ints and slice bounds are absolute positions (``ctx.positions``); negative
    ones count from the end of the current call (``-1`` = its last position).
    """
    pos = ctx.positions
    n = pos.shape[0]
    if isinstance(positions, str):
        if positions == "all":
            return None
        if positions == "last_prompt":
            return pos == ctx.n_prompt - 1
        return pos < ctx.n_prompt if positions == "prompt" else pos >= ctx.n_prompt
    if isinstance(positions, slice):
        start, stop, step = positions.start, positions.stop, positions.step or 1
        if (start or 0) < 0 or (stop or 0) < 0:
            mask = torch.zeros(n, dtype=torch.bool, device=pos.device)
            mask[positions] = True
            return mask
        start = start or 0
        mask = pos >= start
        if stop is not None:
            mask &= pos < stop
        if step != 1:
            mask &= (pos - start) % step == 0
        return mask
    idx = positions.to(pos.device)  # type: ignore[union-attr]
    mask = torch.isin(pos, idx[idx >= 0])
    rel = idx[idx < 0] + n
    if rel.numel():
        mask[rel[rel >= 0]] = True
    return mask


class Edit(abc.ABC):
    """Base of the ready-made edits: selects positions and units, delegates the rest.

    Subclasses implement :meth:`apply`, which returns the edited activation for every
    position; :meth:`__call__` keeps the original values outside the selected positions and
    units.

    Args:
        positions: ``"all"``, ``"prompt"`` (positions ``< ctx.n_prompt``), ``"generated"``
            (the others), ``"last_prompt"`` (position ``ctx.n_prompt - 1``), a ``slice`` of
            absolute positions, or a sequence of them (negative values count from the end of
            the current call).
        units: ``None`` (all units), or the indices of the units to change.
    """

    def __init__(self, *, positions: Positions = "all", units: Units = None) -> None:
        self.positions = _check_positions(positions)
        self.units = (
            None if units is None else torch.as_tensor(units, dtype=torch.int64).reshape(-1)
        )

    @abc.abstractmethod
    def apply(self, t: Tensor, ctx: EditContext, sel: Tensor | None) -> Tensor:
        """The edited activation ``(batch, pos, unit)``; ``sel`` is the position mask
        (``None`` = all) so that edits indexing by position can check their range."""

    def __call__(self, t: Tensor, ctx: EditContext) -> Tensor | None:
        sel = position_mask(self.positions, ctx)
        if sel is not None and not bool(sel.any()):
            return None
        new = self.apply(t, ctx, sel)
        if sel is None and self.units is None:
            return new
        mask = torch.ones(1, t.shape[1], 1, dtype=torch.bool, device=t.device)
        if sel is not None:
            mask = sel.view(1, -1, 1)
        if self.units is not None:
            umask = torch.zeros(t.shape[-1], dtype=torch.bool, device=t.device)
            try:
                umask[self.units.to(t.device)] = True
            except IndexError:
                raise InterventionError(
                    f"Site {ctx.site.name!r}: units {self.units.tolist()} out of range for "
                    f"{t.shape[-1]} units."
                ) from None
            mask = mask & umask.view(1, 1, -1)
        return torch.where(mask, new, t)

    def _site_value(self, value: SiteTensors, ctx: EditContext, what: str) -> Tensor:
        if isinstance(value, Mapping):
            if ctx.site.name not in value:
                raise InterventionError(
                    f"{type(self).__name__}: no {what} for site {ctx.site.name!r}; the mapping "
                    f"has {sorted(value)[:8]}. Record the same site in the source run."
                )
            value = value[ctx.site.name]
        return value

    def _check_units(self, v: Tensor, t: Tensor, ctx: EditContext, what: str) -> Tensor:
        if v.shape[-1] != t.shape[-1]:
            raise InterventionError(
                f"{type(self).__name__} at {ctx.site.name!r}: {what} has {v.shape[-1]} units on "
                f"its last axis; the activation has {t.shape[-1]} (shape {tuple(t.shape)})."
            )
        return v.to(device=t.device, dtype=t.dtype)

    def _extra(self) -> str:
        return ""

    def __repr__(self) -> str:
        parts = [p for p in (self._extra(),) if p]
        if self.positions != "all":
            parts.append(f"positions={self.positions!r}")
        if self.units is not None:
            parts.append(f"units={self.units.tolist()}")
        return f"{type(self).__name__}({', '.join(parts)})"


class add(Edit):
    """Add ``coef * vector`` to the activation (steering by activation addition).

    ``t[b, p] <- t[b, p] + coef * vector`` at the selected positions.

    Args:
        vector: ``(unit,)`` (or any shape broadcastable to ``(batch, pos, unit)``).
        coef: the coefficient (may be negative); an attribute, so it can be changed between
            calls.
        positions, units: see :class:`Edit`.

    Examples:
        >>> import torch
        >>> from neuronatlas.intervene import EditContext
        >>> from neuronatlas.sites import Site
        >>> ctx = EditContext(Site.make("h"), 0, torch.arange(3), n_prompt=2)
        >>> add(torch.ones(2), coef=2.0, positions="generated")(torch.zeros(1, 3, 2), ctx)[0]
        tensor([[0., 0.],
                [0., 0.],
                [2., 2.]])
    """

    def __init__(
        self, vector: Any, coef: float = 1.0, *, positions: Positions = "all", units: Units = None
    ) -> None:
        super().__init__(positions=positions, units=units)
        self.vector = _as_tensor(vector, "add: vector")
        self.coef = float(coef)

    def apply(self, t: Tensor, ctx: EditContext, sel: Tensor | None) -> Tensor:
        v = self._check_units(self.vector, t, ctx, "the vector")
        return t + self.coef * v

    def _extra(self) -> str:
        return f"vector={tuple(self.vector.shape)}, coef={self.coef:g}"


class project_out(Edit):
    """Remove the component of the activation in the span of ``directions``.

    ``t <- t - Q Qᵀ t`` with ``Q`` an orthonormal basis of the span (from a QR decomposition),
    so the directions need not be orthonormal.

    Args:
        directions: ``(unit,)`` or ``(k, unit)``.
        positions, units: see :class:`Edit`.
    """

    def __init__(
        self, directions: Any, *, positions: Positions = "all", units: Units = None
    ) -> None:
        super().__init__(positions=positions, units=units)
        d = _as_tensor(directions, "project_out: directions")
        d = d.reshape(1, -1) if d.dim() == 1 else d
        if d.dim() != 2:
            raise InterventionError(
                f"project_out: directions must be (unit,) or (k, unit); got {tuple(d.shape)}."
            )
        q, r = torch.linalg.qr(d.double().T)
        keep = r.diagonal().abs() > 1e-10 * max(1.0, float(r.abs().max()))
        if not bool(keep.any()):
            raise InterventionError("project_out: the directions are all zero; nothing to remove.")
        self.basis = q[:, keep].T.contiguous()  # (k, unit), orthonormal rows

    def apply(self, t: Tensor, ctx: EditContext, sel: Tensor | None) -> Tensor:
        q = self._check_units(self.basis, t, ctx, "the directions")
        return t - (t @ q.T) @ q

    def _extra(self) -> str:
        return f"k={self.basis.shape[0]}"


class set_subspace(Edit):
    """Set the activation's coordinates in an orthonormal basis to ``value``.

    ``t <- t + (value - t Bᵀ) B`` for ``B`` with orthonormal rows: the component outside the
    span of ``B`` is kept, the coordinates ``t Bᵀ`` become ``value``.

    Args:
        basis: ``(k, unit)`` with orthonormal rows (``(unit,)`` for one unit-norm direction).
        value: ``(k,)`` or anything broadcastable to ``(batch, pos, k)`` (e.g. coordinates
            recorded in another run).
        positions, units: see :class:`Edit`.
    """

    def __init__(
        self, basis: Any, value: Any, *, positions: Positions = "all", units: Units = None
    ) -> None:
        super().__init__(positions=positions, units=units)
        b = _as_tensor(basis, "set_subspace: basis")
        b = b.reshape(1, -1) if b.dim() == 1 else b
        gram = b.double() @ b.double().T
        err = float((gram - torch.eye(b.shape[0], dtype=torch.float64)).abs().max())
        if b.dim() != 2 or err > 1e-4:
            raise InterventionError(
                f"set_subspace: basis must be (k, unit) with orthonormal rows; |B Bᵀ - I| max is "
                f"{err:.2g}. Orthonormalize it first, e.g. torch.linalg.qr(basis.T).Q.T."
            )
        self.basis = b
        self.value = _as_tensor(value, "set_subspace: value")
        if self.value.shape[-1:] != (b.shape[0],) and self.value.dim() > 0:
            raise InterventionError(
                f"set_subspace: value must have k={b.shape[0]} coordinates on its last axis; got "
                f"shape {tuple(self.value.shape)}."
            )

    def apply(self, t: Tensor, ctx: EditContext, sel: Tensor | None) -> Tensor:
        b = self._check_units(self.basis, t, ctx, "the basis")
        value = self.value.to(device=t.device, dtype=t.dtype)
        return t + (value - t @ b.T) @ b

    def _extra(self) -> str:
        return f"k={self.basis.shape[0]}"


class patch(Edit):
    """Replace the activation by the one of another run (activation patching).

    ``t[b, p] <- source[b, p]`` at the selected positions, with ``p`` the absolute position
    (so a source recorded on the prompt patches the prompt positions of a ``generate`` call).

    Args:
        source: ``(batch, pos, unit)`` activations (batch 1 broadcasts), or a mapping
            ``{site name: tensor}`` such as ``Recorder.pop()`` returns (one source for many
            sites).
        positions, units: see :class:`Edit`.
    """

    def __init__(
        self, source: SiteTensors, *, positions: Positions = "all", units: Units = None
    ) -> None:
        super().__init__(positions=positions, units=units)
        if isinstance(source, Mapping):
            self.source: SiteTensors = {
                k: _as_tensor(v, f"patch: source[{k!r}]") for k, v in source.items()
            }
        else:
            self.source = _as_tensor(source, "patch: source")

    def apply(self, t: Tensor, ctx: EditContext, sel: Tensor | None) -> Tensor:
        src = self._site_value(self.source, ctx, "source activation")
        if src.dim() != 3 or src.shape[0] not in (1, t.shape[0]):
            raise InterventionError(
                f"patch at {ctx.site.name!r}: the source must be (batch, pos, unit) with batch 1 "
                f"or {t.shape[0]}; got {tuple(src.shape)}."
            )
        src = self._check_units(src, t, ctx, "the source")
        pos = ctx.positions
        used = pos if sel is None else pos[sel]
        if int(used.max()) >= src.shape[1]:
            raise InterventionError(
                f"patch at {ctx.site.name!r}: the source has {src.shape[1]} positions but "
                f"position {int(used.max())} is patched. Restrict positions (e.g. "
                "positions='prompt') or record the source on a sequence as long."
            )
        return src[:, pos.clamp(max=src.shape[1] - 1)].expand_as(t)

    def _extra(self) -> str:
        src = self.source
        return f"source={sorted(src)}" if isinstance(src, Mapping) else f"source={tuple(src.shape)}"


class zero(Edit):
    """Set the activation to zero (zero ablation) at the selected positions and units."""

    def apply(self, t: Tensor, ctx: EditContext, sel: Tensor | None) -> Tensor:
        return torch.zeros_like(t)


class mean(Edit):
    """Replace the activation by a fixed mean (mean ablation).

    Args:
        means: ``(unit,)`` (e.g. a site's ``mean`` column of an atlas' ``units.parquet``), or a
            mapping ``{site name: (unit,)}``.
        positions, units: see :class:`Edit`.
    """

    def __init__(
        self, means: SiteTensors, *, positions: Positions = "all", units: Units = None
    ) -> None:
        super().__init__(positions=positions, units=units)
        if isinstance(means, Mapping):
            self.means: SiteTensors = {
                k: _as_tensor(v, f"mean: means[{k!r}]") for k, v in means.items()
            }
        else:
            self.means = _as_tensor(means, "mean: means")

    def apply(self, t: Tensor, ctx: EditContext, sel: Tensor | None) -> Tensor:
        m = self._check_units(self._site_value(self.means, ctx, "means"), t, ctx, "the means")
        return m.expand_as(t)


class resample(Edit):
    """Replace each (batch, pos) activation by a random row of a pool (resample ablation).

    Args:
        pool: ``(n, unit)`` activations recorded on other inputs (or ``(batch, pos, unit)``,
            flattened), or a mapping ``{site name: pool}``.
        generator: a ``torch.Generator`` (CPU) for reproducible draws.
        positions, units: see :class:`Edit`.
    """

    def __init__(
        self,
        pool: SiteTensors,
        generator: torch.Generator | None = None,
        *,
        positions: Positions = "all",
        units: Units = None,
    ) -> None:
        super().__init__(positions=positions, units=units)
        if isinstance(pool, Mapping):
            self.pool: SiteTensors = {
                k: _as_tensor(v, f"resample: pool[{k!r}]") for k, v in pool.items()
            }
        else:
            self.pool = _as_tensor(pool, "resample: pool")
        self.generator = generator

    def apply(self, t: Tensor, ctx: EditContext, sel: Tensor | None) -> Tensor:
        p = self._site_value(self.pool, ctx, "pool")
        p = self._check_units(p.reshape(-1, p.shape[-1]), t, ctx, "the pool")
        if p.shape[0] == 0:
            raise InterventionError(f"resample at {ctx.site.name!r}: the pool is empty.")
        idx = torch.randint(p.shape[0], t.shape[:2], generator=self.generator)
        return p[idx.to(p.device)]


class heads:
    """Apply an edit to chosen attention heads only.

    The activation ``(batch, pos, n_heads * d_head)`` is read as ``(batch, pos, n_heads,
    d_head)`` — the layout of the input of an attention output projection
    (``transformer.h.N.attn.c_proj:input``, ``model.layers.N.self_attn.o_proj:input``,
    ``encoder.layer.N.attention.output.dense:input``). The inner edit sees the full-width
    activation (so sources, means and vectors are recorded at the same site); only the columns
    of the chosen heads take its result.

    Args:
        n_heads: number of heads (the unit count must be a multiple of it).
        edit: any edit ``fn(t, ctx)``.
        heads: the head indices to edit (an int or a sequence).

    Examples:
        >>> import torch
        >>> from neuronatlas.intervene import EditContext
        >>> from neuronatlas.sites import Site
        >>> ctx = EditContext(Site.make("o:input", "output"), 0, torch.arange(1), 1)
        >>> heads(2, zero(), heads=[1])(torch.ones(1, 1, 4), ctx)[0, 0]
        tensor([1., 1., 0., 0.])
    """

    def __init__(
        self,
        n_heads: int,
        edit: Callable[[Tensor, EditContext], Tensor | None],
        heads: int | Sequence[int],
    ) -> None:
        if not isinstance(n_heads, int) or n_heads < 1:
            raise InterventionError(f"heads: n_heads must be an int >= 1; got {n_heads!r}.")
        if not callable(edit):
            raise InterventionError(f"heads: edit must be callable as edit(t, ctx); got {edit!r}.")
        chosen = torch.as_tensor(heads, dtype=torch.int64).reshape(-1)
        if chosen.numel() == 0 or int(chosen.min()) < 0 or int(chosen.max()) >= n_heads:
            raise InterventionError(
                f"heads: heads must be indices in [0, {n_heads}); got {chosen.tolist()}."
            )
        self.n_heads = n_heads
        self.edit = edit
        self.heads = chosen

    def __call__(self, t: Tensor, ctx: EditContext) -> Tensor | None:
        if t.shape[-1] % self.n_heads:
            raise InterventionError(
                f"heads at {ctx.site.name!r}: {t.shape[-1]} units is not a multiple of "
                f"n_heads={self.n_heads}; edit the input of the attention output projection."
            )
        new = self.edit(t, ctx)
        if new is None:
            return None
        hmask = torch.zeros(self.n_heads, dtype=torch.bool, device=t.device)
        hmask[self.heads.to(t.device)] = True
        d_head = t.shape[-1] // self.n_heads
        return torch.where(hmask.repeat_interleave(d_head), new, t)

    def __repr__(self) -> str:
        return f"heads({self.n_heads}, {self.edit!r}, heads={self.heads.tolist()})"
