"""The subspace-patching faithfulness check: row-space vs null-space parts of a direction."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from neuronatlas.intervene import intervene, set_subspace
from neuronatlas.record import Recorder
from neuronatlas.sites import Site, resolve_sites
from neuronatlas.steer._errors import SteeringError

__all__ = ["downstream_weight", "row_null_split", "subspace_illusion"]


def downstream_weight(model: nn.Module, module: str) -> Tensor:
    """The weight ``W`` of ``module`` as a map ``(d_out, unit)``: ``nn.Linear.weight`` as is,
    Hugging Face ``Conv1D`` (GPT-2) transposed."""
    mods = dict(model.named_modules())
    if module not in mods or not isinstance(getattr(mods[module], "weight", None), Tensor):
        raise SteeringError(
            f"{module!r} is not a module with a weight matrix; pass the weight itself."
        )
    m = mods[module]
    w = m.weight.detach()
    return w.T if type(m).__name__ == "Conv1D" else w


def row_null_split(direction: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Split ``direction`` (``(unit,)``) into its parts in the row space of ``weight``
    (``(d_out, unit)``) and in its null space: ``v = v_row + v_null``, ``W v_null = 0``.

    ``v_row = V_r V_rᵀ v`` with ``V_r`` the right singular vectors of ``W`` whose singular
    values exceed ``max(W.shape) · eps · σ_max``.

    Examples:
        >>> w = torch.tensor([[1.0, 0.0, 0.0]])
        >>> row_null_split(torch.tensor([1.0, 2.0, 0.0]), w)
        (tensor([1., 0., 0.]), tensor([0., 2., 0.]))
    """
    v = direction.detach().double().reshape(-1)
    w = weight.detach().double()
    if w.dim() != 2 or w.shape[1] != v.shape[0]:
        raise SteeringError(
            f"row_null_split: weight must be (d_out, unit={v.shape[0]}); got {tuple(w.shape)}."
        )
    _, s, vh = torch.linalg.svd(w, full_matrices=False)
    tol = max(w.shape) * torch.finfo(torch.float64).eps * (float(s.max()) if s.numel() else 0.0)
    vr = vh[s > tol]
    row = vr.T @ (vr @ v)
    return row.to(direction.dtype), (v - row).to(direction.dtype)


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


@torch.no_grad()
def subspace_illusion(
    model: nn.Module,
    site: str | Site,
    direction: Tensor,
    base: Any,
    source: Any,
    metric: Callable[[Any], Tensor],
    *,
    weight: Tensor | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """How much of a 1-D subspace patch's effect the row-space and null-space parts carry.

    From "Is This the Subspace You Are Looking for? An Interpretability Illusion for Subspace
    Activation Patching" (Makelov, Lange and Nanda, 2023). Patching the activation ``x`` of a
    ``base`` run along a unit direction ``v`` with a ``source`` run's activation ``x_s`` sets
    ``x ← x + ((x_s − x)·v) v``. Only the part of the change in the row space of the
    downstream weights ``W`` (the map that reads the site) can act downstream; a direction
    whose null-space part (``W v_null = 0``) tracks the variable while its row-space part
    opens a normally dormant pathway shows an effect that neither part carries alone — the
    illusion. The check patches along ``v``, along ``v_row/‖v_row‖`` and along
    ``v_null/‖v_null‖`` and reports each effect ``mean(metric(patched)) −
    mean(metric(base))``.

    Args:
        model: any module; called as ``model(base)`` (a mapping is passed as keywords, a tuple
            as positional arguments).
        site: the patched site (usually an MLP's hidden units, ``...:input`` of its down
            projection).
        direction: ``(unit,)``.
        base, source: inputs of the two runs (same shapes).
        metric: ``metric(output) -> tensor`` (per example or a scalar).
        weight: ``W`` as ``(d_out, unit)``; by default the weight of the site's module when
            the site is a module's input (:func:`downstream_weight`).
        threshold: ``suspect`` is set when the row-space part alone carries less than this
            fraction of the full effect.

    Returns:
        ``{"effect_full", "effect_row", "effect_null", "frac_row", "frac_null", "norm_row",
        "norm_null", "suspect"}`` (``norm_*``: the parts' norms for the unit direction;
        ``frac_*``: effect / full effect, NaN when the full effect is 0).
    """
    resolved = resolve_sites(model, site)
    if len(resolved) != 1:
        raise SteeringError(f"subspace_illusion patches one site; {site!r} gives {len(resolved)}.")
    s = resolved[0]
    if weight is None:
        if s.hook != "input":
            raise SteeringError(
                f"Site {s.name!r}: pass weight=W (the matrix that reads this site, (d_out, unit)); "
                "it is only inferred for ':input' sites, from the module that receives them."
            )
        weight = downstream_weight(model, s.module)
    v = direction.detach().double().reshape(-1)
    if float(v.norm()) == 0:
        raise SteeringError("subspace_illusion: the direction is zero.")
    v = v / v.norm()
    row, null = row_null_split(v, weight)
    with Recorder(model, s) as rec:
        _call(model, source)
        src = rec.pop()[s.name]

    def effect(u: Tensor) -> float:
        if float(u.norm()) < 1e-8:
            return 0.0
        u = (u / u.norm()).to(src.dtype)
        value = src @ u[:, None]  # (batch, pos, 1) coordinates of the source
        with intervene(model, {s.name: set_subspace(u, value)}):
            return float(metric(_call(model, base)).double().mean())

    m0 = float(metric(_call(model, base)).double().mean())
    full, e_row, e_null = effect(v) - m0, effect(row) - m0, effect(null) - m0
    if float(row.norm()) < 1e-8:
        e_row = 0.0
    if float(null.norm()) < 1e-8:
        e_null = 0.0
    frac = (lambda e: e / full) if abs(full) > 1e-12 else (lambda e: float("nan"))
    return {
        "effect_full": full,
        "effect_row": e_row,
        "effect_null": e_null,
        "frac_row": frac(e_row),
        "frac_null": frac(e_null),
        "norm_row": float(row.norm()),
        "norm_null": float(null.norm()),
        "suspect": bool(abs(full) > 1e-12 and abs(e_row) < threshold * abs(full)),
    }
