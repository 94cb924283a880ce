"""Contrastive Activation Addition and Linear activation transport, and how vectors become edits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from neuronatlas.intervene import Edit, EditContext, add
from neuronatlas.intervene._edits import Positions
from neuronatlas.sites import Site
from neuronatlas.steer._data import Inputs, Reduce, collect, encode, stream
from neuronatlas.steer._errors import SteeringError
from neuronatlas.steer._vector import SteeringVector, data_hash

__all__ = ["METHODS", "caa", "edit_for", "register_method", "transport", "transport_maps"]

#: method name -> function(vector, coef, positions) -> edit
METHODS: dict[str, Callable[[SteeringVector, float, Any], Any]] = {}


def register_method(name: str, make_edit: Callable[[SteeringVector, float, Any], Any]) -> None:
    """Register how vectors of method ``name`` are applied (refuses duplicates)."""
    if name in METHODS:
        raise SteeringError(
            f"Steering method {name!r} is already registered; known: {sorted(METHODS)}."
        )
    METHODS[name] = make_edit


def edit_for(vector: SteeringVector, coef: float = 1.0, *, positions: Positions = "all") -> Any:
    """The edit applying ``vector`` with strength ``coef``: ``add(v, coef)`` for additive
    methods (``caa``, ``fv``), the transport map with strength ``λ = coef`` for
    ``transport``."""
    if vector.method not in METHODS:
        raise SteeringError(
            f"Unknown steering method {vector.method!r} for site {vector.site!r}; known: "
            f"{sorted(METHODS)}."
        )
    return METHODS[vector.method](vector, coef, positions)


def _additive(vector: SteeringVector, coef: float, positions: Any) -> Any:
    return add(vector.vector, coef, positions=positions)


# ----------------------------------------------------------------------------------------- CAA


def caa(
    model: nn.Module,
    positive: Inputs,
    negative: Inputs,
    sites: str | Site | Sequence[str | Site],
    *,
    tokenizer: Any = None,
    reduce: Reduce = "last",
    batch_size: int = 16,
) -> dict[str, SteeringVector]:
    """Contrastive Activation Addition vectors: the mean activation difference over pairs.

    From "Steering Llama 2 via Contrastive Activation Addition" (Rimsky et al., 2023): for
    pairs ``(p_i, n_i)`` that differ only in the behaviour (e.g. the same question with the
    answer letter matching or not matching it), the steering vector of a layer is

        ``v = (1/N) Σ_i [a(p_i) - a(n_i)]``

    with ``a(·)`` the residual-stream activation at the answer token (``reduce="last"``; the
    paper's choice) or averaged over tokens (``reduce="mean"``). It is added as ``t + c·v``
    with a positive coefficient ``c`` to elicit the behaviour, negative to suppress it, at
    every position after the prompt in the paper (here: any positions, see
    :meth:`SteeringVector.edit`).

    Args:
        model: a causal LM called as ``model(input_ids=..., attention_mask=...)``.
        positive, negative: paired examples (same length; texts with ``tokenizer``, or
            token ids).
        sites: where to take (and later add) the vectors, e.g. ``"resid"`` for every block.
        tokenizer: for texts.
        reduce: ``"last"`` or ``"mean"`` (see above).
        batch_size: sequences per forward pass.

    Returns:
        ``{site name: SteeringVector(method="caa")}``; ``meta`` holds ``n_pairs``, ``reduce``
        and the vector's L2 ``norm``.
    """
    pos = encode(positive, tokenizer, what="positive")
    neg = encode(negative, tokenizer, what="negative")
    if len(pos) != len(neg):
        raise SteeringError(
            f"CAA needs paired examples: got {len(pos)} positive and {len(neg)} negative. Give "
            "one negative per positive (the same prompt with the opposite answer)."
        )
    if reduce == "all":
        raise SteeringError("CAA takes one activation per example: reduce='last' or 'mean'.")
    a_pos = collect(model, pos, sites, reduce=reduce, batch_size=batch_size)
    a_neg = collect(model, neg, sites, reduce=reduce, batch_size=batch_size)
    h = data_hash(pos, neg)
    out = {}
    for name in a_pos:
        v = (a_pos[name].double() - a_neg[name].double()).mean(0).float()
        meta = {"n_pairs": len(pos), "reduce": reduce, "norm": float(v.norm())}
        out[name] = SteeringVector(name, "caa", {"vector": v}, h, meta)
    return out


# ----------------------------------------------------------------------------------- transport


def transport_maps(source: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-unit affine maps ``T_u(x) = scale_u · x + shift_u`` between two activation sets.

    Linear-AcT of "Controlling Language and Diffusion Models by Transporting Activations"
    (Rodriguez et al., 2024): for each unit independently, the sorted source samples
    ``a_(1) ≤ … ≤ a_(N)`` are paired with the sorted target samples ``b_(1) ≤ … ≤ b_(N)``
    (the 1-D optimal transport coupling) and ``(scale, shift)`` minimize
    ``Σ_i (scale · a_(i) + shift − b_(i))²`` (least squares). When the two sets differ in size,
    both are summarized by ``N = min(N_source, N_target)`` evenly spaced quantiles. The source
    support ``[lo, hi] = [min a, max a]`` is kept for the transport-support rule of the paper
    (outside it the map is not applied).

    Args:
        source: ``(n_source, unit)`` activations of the source (e.g. the unwanted style).
        target: ``(n_target, unit)`` activations of the target.

    Returns:
        ``{"scale", "shift", "lo", "hi"}``, each ``(unit,)`` float32.

    Examples:
        >>> a = torch.randn(1000, 3)
        >>> m = transport_maps(a, 2 * a + 1)
        >>> torch.allclose(m["scale"], torch.full((3,), 2.0)), torch.allclose(m["shift"], torch.ones(3), atol=1e-5)
        (True, True)
    """
    if source.dim() != 2 or target.dim() != 2 or source.shape[1] != target.shape[1]:
        raise SteeringError(
            f"transport_maps needs (n, unit) source and target with the same units; got "
            f"{tuple(source.shape)} and {tuple(target.shape)}."
        )
    if min(source.shape[0], target.shape[0]) < 2:
        raise SteeringError("transport_maps needs at least 2 samples on each side.")
    a = source.double().sort(0).values
    b = target.double().sort(0).values
    n = min(a.shape[0], b.shape[0])

    def to_n(x: Tensor) -> Tensor:
        if x.shape[0] == n:
            return x
        q = torch.linspace(0, 1, n, dtype=torch.float64)
        return torch.quantile(x, q, dim=0)

    a, b = to_n(a), to_n(b)
    am, bm = a.mean(0), b.mean(0)
    var = ((a - am) ** 2).mean(0)
    cov = ((a - am) * (b - bm)).mean(0)
    scale = torch.where(var > 1e-12, cov / var.clamp_min(1e-12), torch.ones_like(var))
    shift = bm - scale * am
    return {
        "scale": scale.float(),
        "shift": shift.float(),
        "lo": source.min(0).values.float(),
        "hi": source.max(0).values.float(),
    }


class apply_transport(Edit):
    """Apply per-unit affine transport maps with strength ``λ``.

    ``t <- t + λ · (scale · t + shift − t)`` — ``λ = 0`` leaves the activation unchanged,
    ``λ = 1`` is the full transport, values in between interpolate (Rodriguez et al., 2024).
    With ``support=True`` (the default) units whose value lies outside the source support
    ``[lo, hi]`` are left as they are.

    Args:
        maps: the output of :func:`transport_maps`.
        strength: ``λ``.
        support: apply the map only inside the source support.
        positions, units: see :class:`~neuronatlas.intervene.Edit`.
    """

    def __init__(
        self,
        maps: dict[str, Tensor],
        strength: float = 1.0,
        *,
        support: bool = True,
        positions: Positions = "all",
        units: Any = None,
    ) -> None:
        super().__init__(positions=positions, units=units)
        missing = {"scale", "shift", "lo", "hi"} - set(maps)
        if missing:
            raise SteeringError(f"apply_transport: the maps lack {sorted(missing)}.")
        self.maps = {k: v.detach().float() for k, v in maps.items()}
        self.strength = float(strength)
        self.support = bool(support)

    def apply(self, t: Tensor, ctx: EditContext, sel: Tensor | None) -> Tensor:
        m = {k: self._check_units(v, t, ctx, f"the map's {k}") for k, v in self.maps.items()}
        moved = t + self.strength * (m["scale"] * t + m["shift"] - t)
        if self.support:
            inside = (t >= m["lo"]) & (t <= m["hi"])
            moved = torch.where(inside, moved, t)
        return moved

    def _extra(self) -> str:
        return f"strength={self.strength:g}, support={self.support}"


def transport(
    model: nn.Module,
    source: Inputs,
    target: Inputs,
    sites: str | Site | Sequence[str | Site],
    *,
    tokenizer: Any = None,
    reduce: Reduce = "all",
    n_quantiles: int | None = None,
    batch_size: int = 16,
) -> dict[str, SteeringVector]:
    """Linear activation transport maps from ``source`` to ``target`` activations, per site.

    "Controlling Language and Diffusion Models by Transporting Activations" (Rodriguez et
    al., 2024), Linear-AcT: see :func:`transport_maps` for the estimator. Activations are
    taken at every token (``reduce="all"``, default) or one per example (``"mean"`` /
    ``"last"``). Each site's map is estimated from the unsteered model (the paper can also
    estimate layers in sequence, each on the already-transported model; not done here).
    Apply with ``vector.edit(λ)``, ``λ ∈ [0, 1]``.

    With ``n_quantiles`` (and ``reduce="all"``), activations are streamed through a mergeable
    quantile sketch per site (:class:`~neuronatlas.stats.QuantileSketch`) and the maps are
    fitted on ``n_quantiles`` sorted quantile pairs (at probabilities ``(i + ½)/n``) instead
    of the sorted samples: memory stays bounded whatever the number of tokens (the support is
    the exact source ``[min, max]``).

    Returns:
        ``{site name: SteeringVector(method="transport")}`` with tensors ``scale, shift, lo,
        hi``; ``meta`` holds the sample counts.
    """
    src = encode(source, tokenizer, what="source")
    tgt = encode(target, tokenizer, what="target")
    h = data_hash(src, tgt)
    out = {}
    if n_quantiles is not None:
        if reduce != "all" or not isinstance(n_quantiles, int) or n_quantiles < 2:
            raise SteeringError(
                f"n_quantiles must be an int >= 2, with reduce='all'; got {n_quantiles!r} and "
                f"reduce={reduce!r}."
            )
        q_src = _sketches(model, src, sites, batch_size)
        q_tgt = _sketches(model, tgt, sites, batch_size)
        probs = ((torch.arange(n_quantiles, dtype=torch.float64) + 0.5) / n_quantiles).tolist()
        for name, sk in q_src.items():
            a = torch.as_tensor(sk.quantile(probs)).T  # (n_quantiles, unit)
            b = torch.as_tensor(q_tgt[name].quantile(probs)).T
            maps = transport_maps(a, b)
            maps["lo"], maps["hi"] = sk.min_.float().cpu(), sk.max_.float().cpu()
            meta = {"n_source": sk.n_, "n_target": q_tgt[name].n_, "reduce": reduce,
                    "n_quantiles": n_quantiles}  # fmt: skip
            out[name] = SteeringVector(name, "transport", maps, h, meta)
        return out
    a_src = collect(model, src, sites, reduce=reduce, batch_size=batch_size)
    a_tgt = collect(model, tgt, sites, reduce=reduce, batch_size=batch_size)
    for name in a_src:
        maps = transport_maps(a_src[name], a_tgt[name])
        meta = {"n_source": int(a_src[name].shape[0]), "n_target": int(a_tgt[name].shape[0]),
                "reduce": reduce}  # fmt: skip
        out[name] = SteeringVector(name, "transport", maps, h, meta)
    return out


def _sketches(
    model: nn.Module, seqs: Sequence[Tensor], sites: Any, batch_size: int
) -> dict[str, Any]:
    """One quantile sketch per site over every token of ``seqs`` (bounded memory)."""
    from neuronatlas.stats import QuantileSketch, SiteBatch

    out: dict[str, Any] = {}
    for i, (acts, mask) in enumerate(stream(model, seqs, sites, batch_size=batch_size)):
        for name, a in acts.items():
            if name not in out:
                out[name] = QuantileSketch(a.shape[-1], device=a.device)
            out[name].update(SiteBatch.from_values(a, mask.to(a.device), first_doc=i * batch_size))
    for name, sk in out.items():
        bad = int(sk.low_.sum() + sk.high_.sum())
        if bad:
            raise SteeringError(
                f"Site {name!r}: {bad} non-finite activations; cannot fit transport maps."
            )
    return out


def _transport_edit(vector: SteeringVector, coef: float, positions: Any) -> Any:
    return apply_transport(vector.tensors, coef, positions=positions)


register_method("caa", _additive)
register_method("fv", _additive)
register_method("transport", _transport_edit)
