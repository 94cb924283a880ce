"""Universal units: the best Pearson match of every unit in another model, streaming.

"Universal Neurons in GPT2 Language Models" (Gurnee et al., 2024) correlates every neuron of a
model with every neuron of models trained from other seeds, over the same tokens, and calls a
neuron universal when its *excess correlation* — its maximum correlation with the other
model's neurons minus the same maximum against a randomly rotated basis of the other model —
exceeds 0.5. :func:`unit_correlations` computes both maxima in one streaming pass per block of
units: the raw activations are never kept, only float64 co-moment sums on the device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from neuronatlas.errors import AccumulatorError, DataError, NeuronAtlasError
from neuronatlas.sites import Site, resolve_sites
from neuronatlas.stats._common import check_state, cpu, header, resolve_device
from neuronatlas.units._batches import as_batches

__all__ = [
    "UNIVERSAL_EXCESS",
    "CrossCorrelation",
    "UnitCorrelations",
    "random_rotation",
    "unit_correlations",
]

#: Gurnee et al. (2024): a neuron is universal when its excess correlation exceeds 0.5.
UNIVERSAL_EXCESS = 0.5


def random_rotation(n: int, seed: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """A Haar-random ``(n, n)`` orthogonal matrix (QR of a Gaussian matrix, signs fixed).

    Examples:
        >>> r = random_rotation(4, seed=0)
        >>> bool(torch.allclose(r @ r.T, torch.eye(4, dtype=r.dtype)))
        True
    """
    g = torch.Generator().manual_seed(int(seed))
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))[None, :]).to(dtype)


class CrossCorrelation:
    """Running Pearson correlations between units ``a`` and units ``b`` seen on the same rows.

    State (float64 by default, on ``device``): the row count, the means, the centered sums of
    squares and the ``(a, b)`` centered cross-product sums, merged per batch with the pairwise
    update of Chan, Golub & LeVeque ("Updating formulae and a pairwise algorithm for computing
    sample variances", 1979), extended to co-moments::

        C = C_1 + C_2 + (n_1 n_2 / n) (mean_a2 - mean_a1) (mean_b2 - mean_b1)^T

    With ``groups_a`` / ``groups_b`` (unit counts of consecutive groups, e.g. one per site) it
    also keeps the within-group co-moments, which give the correlations against a rotated
    basis of each group (:meth:`max_rotated`) without recording anything else.

    Args:
        n_a, n_b: units on each side.
        groups_a, groups_b: sizes of consecutive unit groups (summing to ``n_a`` / ``n_b``) whose
            within-group co-moments are kept; None keeps none.
        dtype: precision of the batch products and of the state (float64 by default).
        device: where the state lives; default CPU.

    Examples:
        >>> import torch
        >>> x = torch.randn(100, 2, dtype=torch.float64)
        >>> cc = CrossCorrelation(2, 1)
        >>> cc.update(x, 3 * x[:, :1] + 1)
        >>> cc.corr()[:, 0].round(decimals=6).tolist()[0]
        1.0
    """

    def __init__(
        self,
        n_a: int,
        n_b: int,
        *,
        groups_a: Sequence[int] | None = None,
        groups_b: Sequence[int] | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ):
        for name, v in (("n_a", n_a), ("n_b", n_b)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise AccumulatorError(
                    f"CrossCorrelation({name}=...) must be an int >= 1; got {v!r}."
                )
        if dtype not in (torch.float32, torch.float64):
            raise AccumulatorError(
                f"CrossCorrelation dtype must be float32 or float64; got {dtype}."
            )
        self.n_a, self.n_b, self.dtype = int(n_a), int(n_b), dtype
        self.groups_a = _check_groups(groups_a, self.n_a, "groups_a")
        self.groups_b = _check_groups(groups_b, self.n_b, "groups_b")
        dev = resolve_device(device)
        z = {"dtype": dtype, "device": dev}
        self.n_ = 0
        self.mean_a_ = torch.zeros(self.n_a, **z)
        self.mean_b_ = torch.zeros(self.n_b, **z)
        self.m2_a_ = torch.zeros(self.n_a, **z)
        self.m2_b_ = torch.zeros(self.n_b, **z)
        self.c_ = torch.zeros(self.n_a, self.n_b, **z)
        self.g_a_ = [torch.zeros(g, g, **z) for g in self.groups_a]
        self.g_b_ = [torch.zeros(g, g, **z) for g in self.groups_b]

    @property
    def device(self) -> torch.device:
        return self.c_.device

    def update(self, xa: Tensor, xb: Tensor) -> None:
        """Fold in ``xa`` ``(n, n_a)`` and ``xb`` ``(n, n_b)``: the same ``n`` rows (finite)."""
        if xa.dim() != 2 or xb.dim() != 2 or xa.shape[0] != xb.shape[0]:
            raise AccumulatorError(
                f"CrossCorrelation.update expects (n, n_a) and (n, n_b) tensors with the same "
                f"rows; got {tuple(xa.shape)} and {tuple(xb.shape)}."
            )
        if xa.shape[1] != self.n_a or xb.shape[1] != self.n_b:
            raise AccumulatorError(
                f"CrossCorrelation was created for ({self.n_a}, {self.n_b}) units; got "
                f"({xa.shape[1]}, {xb.shape[1]})."
            )
        nb = int(xa.shape[0])
        if nb == 0:
            return
        xa = xa.to(self.device, self.dtype)
        xb = xb.to(self.device, self.dtype)
        if not (bool(torch.isfinite(xa.sum())) and bool(torch.isfinite(xb.sum()))):
            raise AccumulatorError(
                "CrossCorrelation got non-finite activations (NaN or inf); correlations are "
                "undefined for them. Check the model's outputs (the atlas counts them in n_nan, "
                "n_posinf, n_neginf)."
            )
        ma, mb = xa.mean(0), xb.mean(0)
        da, db = xa - ma, xb - mb
        batch = (
            nb, ma, mb, (da * da).sum(0), (db * db).sum(0), da.T @ db,
            [g.T @ g for g in _split(da, self.groups_a)],
            [g.T @ g for g in _split(db, self.groups_b)],
        )  # fmt: skip
        self._combine(batch)

    def _combine(self, other: tuple[Any, ...]) -> None:
        nb, ma, mb, m2a, m2b, c, ga, gb = other
        n0 = self.n_
        n = n0 + nb
        if n == 0:
            return
        f = n0 * nb / n
        da, db = ma - self.mean_a_, mb - self.mean_b_
        self.c_ += c + f * torch.outer(da, db)
        self.m2_a_ += m2a + f * da * da
        self.m2_b_ += m2b + f * db * db
        for mine, theirs, d in zip(self.g_a_, ga, _split(da[None, :], self.groups_a), strict=True):
            mine += theirs + f * (d.T @ d)
        for mine, theirs, d in zip(self.g_b_, gb, _split(db[None, :], self.groups_b), strict=True):
            mine += theirs + f * (d.T @ d)
        self.mean_a_ += da * (nb / n)
        self.mean_b_ += db * (nb / n)
        self.n_ = n

    def merge(self, other: CrossCorrelation) -> CrossCorrelation:
        """Fold another shard of the same pair of unit sets in; returns ``self``."""
        if not isinstance(other, CrossCorrelation):
            raise AccumulatorError(
                f"CrossCorrelation.merge expects another CrossCorrelation; got {type(other).__name__}."
            )
        same = (other.n_a, other.n_b, other.groups_a, other.groups_b) == (
            self.n_a, self.n_b, self.groups_a, self.groups_b
        )  # fmt: skip
        if not same:
            raise AccumulatorError(
                f"Cannot merge CrossCorrelation states of different shapes: ({self.n_a}, "
                f"{self.n_b}, groups {self.groups_a}, {self.groups_b}) here, ({other.n_a}, "
                f"{other.n_b}, groups {other.groups_a}, {other.groups_b}) in the other."
            )
        dev, dt = self.device, self.dtype
        mv = lambda t: t.to(dev, dt)  # noqa: E731
        self._combine(
            (other.n_, mv(other.mean_a_), mv(other.mean_b_), mv(other.m2_a_), mv(other.m2_b_),
             mv(other.c_), [mv(g) for g in other.g_a_], [mv(g) for g in other.g_b_])
        )  # fmt: skip
        return self

    def state_dict(self) -> dict[str, Any]:
        """Plain CPU tensors and numbers; ``torch.load(..., weights_only=True)`` reads it."""
        state = header(
            "CrossCorrelation", self.n_a, n_b=self.n_b, groups_a=list(self.groups_a),
            groups_b=list(self.groups_b), dtype=str(self.dtype).removeprefix("torch."),
        )  # fmt: skip
        state.update(
            n=self.n_, mean_a=cpu(self.mean_a_), mean_b=cpu(self.mean_b_), m2_a=cpu(self.m2_a_),
            m2_b=cpu(self.m2_b_), c=cpu(self.c_), g_a=[cpu(g) for g in self.g_a_],
            g_b=[cpu(g) for g in self.g_b_],
        )  # fmt: skip
        return state

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], *, device: torch.device | str | None = None
    ) -> CrossCorrelation:
        """Rebuild the state saved by :meth:`state_dict`, on ``device`` (default CPU)."""
        check_state(state, "CrossCorrelation")
        self = cls(
            state["n_units"], state["n_b"], groups_a=state["groups_a"] or None,
            groups_b=state["groups_b"] or None, dtype=getattr(torch, state["dtype"]), device=device,
        )  # fmt: skip
        dev, dt = self.device, self.dtype
        self.n_ = int(state["n"])
        for name in ("mean_a", "mean_b", "m2_a", "m2_b", "c"):
            setattr(self, name + "_", state[name].to(dev, dt).clone())
        self.g_a_ = [g.to(dev, dt).clone() for g in state["g_a"]]
        self.g_b_ = [g.to(dev, dt).clone() for g in state["g_b"]]
        return self

    # --- results ---

    def corr(self) -> Tensor:
        """``(n_a, n_b)`` Pearson correlations; NaN where a unit is constant."""
        denom = torch.sqrt(torch.outer(self.m2_a_, self.m2_b_))
        return torch.where(denom > 0, self.c_ / denom, float("nan"))

    def max_rotated(self, side: str, seed: int, *, first_group: int = 0) -> Tensor:
        """Each unit's max correlation with a randomly rotated basis of the other side.

        Group ``i`` of the other side (``groups_b`` for ``side="a"``) is rotated by
        ``random_rotation(size, seed * 1009 + first_group + i)``, so rotated units are mixtures
        of one site's units (``first_group`` numbers the groups of a state that holds a later
        slice of the sites). Returns ``(n_a,)`` for ``side="a"``, ``(n_b,)`` for ``"b"``; NaN
        where undefined.
        """
        if side not in ("a", "b"):
            raise AccumulatorError(f"side must be 'a' or 'b'; got {side!r}.")
        mine_m2 = self.m2_a_ if side == "a" else self.m2_b_
        grams = self.g_b_ if side == "a" else self.g_a_
        groups = self.groups_b if side == "a" else self.groups_a
        if not grams:
            raise AccumulatorError(
                "max_rotated needs the within-group co-moments of the other side: create "
                "CrossCorrelation with groups_a and groups_b."
            )
        c = self.c_ if side == "a" else self.c_.T
        best = torch.full_like(mine_m2, float("-inf"))
        start = 0
        for i, (g, gram) in enumerate(zip(groups, grams, strict=True)):
            rot = random_rotation(g, seed * 1009 + first_group + i, dtype=self.dtype)
            rot = rot.to(self.device)
            cov = c[:, start : start + g] @ rot
            var = ((gram @ rot) * rot).sum(0)
            denom = torch.sqrt(torch.outer(mine_m2, var))
            r = torch.where(denom > 0, cov / denom, float("-inf"))
            best = torch.maximum(best, r.max(1).values)
            start += g
        return torch.where(torch.isfinite(best), best, float("nan"))


def _check_groups(groups: Sequence[int] | None, n: int, name: str) -> tuple[int, ...]:
    if groups is None:
        return ()
    groups = tuple(int(g) for g in groups)
    if any(g < 1 for g in groups) or sum(groups) != n:
        raise AccumulatorError(
            f"CrossCorrelation({name}=...) must be positive group sizes summing to {n}; got "
            f"{list(groups)}."
        )
    return groups


def _split(x: Tensor, groups: tuple[int, ...]) -> list[Tensor]:
    return list(torch.split(x, list(groups), dim=1)) if groups else []


# ------------------------------------------------------------------------------- two models


@dataclass
class UnitCorrelations:
    """The best match of every unit of each model in the other (see :func:`unit_correlations`).

    Attributes:
        a, b: one row per unit of model a / b: ``site, layer, unit, max_corr, match_site,
            match_unit, baseline_corr, universal_excess, label_universal``.
        n_tokens: positions (rows) the correlations are computed over.
        threshold: the ``universal_excess`` cut of ``label_universal``.
        passes: passes over the data that were needed to stay within ``max_bytes``.
    """

    a: pd.DataFrame
    b: pd.DataFrame
    n_tokens: int
    threshold: float
    passes: int


def unit_correlations(
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Iterable[Any] | Callable[[], Iterable[Any]],
    sites_a: str | Sequence[str | Site] = "mlp",
    sites_b: str | Sequence[str | Site] = "mlp",
    *,
    baseline: bool = True,
    threshold: float = UNIVERSAL_EXCESS,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    max_bytes: int = 1 << 30,
    device: torch.device | str | None = None,
) -> UnitCorrelations:
    """For two models run on the same inputs, each unit's best Pearson match in the other model.

    Every unit of ``model_a`` (all ``sites_a``) is correlated with every unit of ``model_b``
    (all ``sites_b``) over the valid positions of ``batches``; for each unit the maximum
    correlation, where it is attained and — with ``baseline`` — the maximum against a randomly
    rotated basis of each of the other model's sites, whose difference is the *excess
    correlation* of Gurnee et al. (2024); ``label_universal`` is ``universal_excess >
    threshold``. (Gurnee et al. average the excess over four other seeds; with one other model
    it is that model's.)

    Memory: the ``(units_a, units_b)`` cross-moment matrix is float64 (``dtype``). When it would
    exceed ``max_bytes``, model a's sites are split into groups and the data is read once per
    group, so ``batches`` must then be re-iterable (a list, or a function returning a fresh
    iterable).

    Args:
        model_a, model_b: the models; called as ``model(*batch.args, **batch.kwargs)`` on the
            same batches (so they must share a tokenizer, or take the same tensors).
        batches: :class:`~neuronatlas.data.Batch` es (``text_batches``), or inputs for
            :func:`~neuronatlas.data.tensor_batches`, or a function returning either.
        sites_a, sites_b: site specs (default: the MLP neurons).
        baseline: also compute the rotated-basis baseline and the excess correlation.
        threshold: the excess correlation above which a unit is universal.
        seed: seed of the random rotations.
        dtype: precision of the co-moment sums (float64; float32 is faster, ~1e-6 relative).
        max_bytes: budget for the co-moment matrices.
        device: where the sums live (default: model a's device).

    Returns:
        :class:`UnitCorrelations`.

    Raises:
        DataError: the batches are empty, the two models' sites have different positions, or
            several passes are needed over a one-shot iterator.
        SiteError: a site does not resolve; ``NeuronAtlasError`` for attention sites.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> a = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        >>> b = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        >>> x = [torch.randn(64, 4) for _ in range(3)]
        >>> res = unit_correlations(a, a, x, "1", "1")
        >>> bool((res.a.max_corr.dropna() > 0.999).all())
        True
    """
    from neuronatlas.record import Recorder

    res_a, res_b = _sites(model_a, sites_a, "sites_a"), _sites(model_b, sites_b, "sites_b")
    dev = resolve_device(device) if device is not None else _device_of(model_a)
    get = _batch_source(batches)
    stream = get()
    first = next(stream, None)
    if first is None:
        raise DataError("unit_correlations got no batches; pass at least one batch of inputs.")
    sizes_a, sizes_b = _probe(model_a, model_b, res_a, res_b, first)
    n_b = sum(sizes_b)
    width = 8 if dtype == torch.float64 else 4
    per_unit = n_b * width
    groups, cur, cur_n = [], [], 0
    for i, size in enumerate(sizes_a):
        if cur and (cur_n + size) * per_unit > max_bytes:
            groups.append(cur)
            cur, cur_n = [], 0
        cur.append(i)
        cur_n += size
    groups.append(cur)
    if len(groups) > 1 and _one_shot(batches):
        raise DataError(
            f"The co-moments of {sum(sizes_a)} x {n_b} units need {len(groups)} passes over the "
            f"data within max_bytes={max_bytes}, but batches is a one-shot iterator. Pass a "
            "list of batches or a function that returns a fresh iterable, or raise max_bytes."
        )

    a_cols = _empty_side(res_a, sizes_a)
    b_best = torch.full((n_b,), float("-inf"), dtype=torch.float64)
    b_arg = torch.full((n_b,), -1, dtype=torch.int64)
    b_base = torch.full((n_b,), float("-inf"), dtype=torch.float64)
    offsets_a = np.concatenate([[0], np.cumsum(sizes_a)])
    n_tokens = 0
    for gi, group in enumerate(groups):
        g_sizes = [sizes_a[i] for i in group]
        acc = CrossCorrelation(
            sum(g_sizes), n_b, groups_a=g_sizes if baseline else None,
            groups_b=sizes_b if baseline else None, dtype=dtype, device=dev,
        )  # fmt: skip
        group_sites = [res_a[i] for i in group]
        items = _chain(first, stream) if gi == 0 else get()
        with (
            Recorder(model_a, group_sites) as rec_a,
            Recorder(model_b, res_b) as rec_b,
            torch.inference_mode(),
        ):
            for batch in as_batches(items):
                xa, xb = _rows(model_a, model_b, rec_a, rec_b, batch, group_sites, res_b)
                acc.update(xa, xb)
        n_tokens = acc.n_
        if n_tokens < 2:
            raise DataError(
                f"unit_correlations saw {n_tokens} valid position(s); correlations need at "
                "least 2. Pass more (or longer) inputs."
            )
        corr = acc.corr()
        filled = torch.nan_to_num(corr, nan=float("-inf"))
        best, arg = filled.max(1)
        base_a = acc.max_rotated("a", seed) if baseline else None
        lo = int(offsets_a[group[0]])
        sl = slice(lo, lo + sum(g_sizes))
        a_cols["max_corr"][sl] = best.cpu().double().numpy()
        a_cols["arg"][sl] = arg.cpu().numpy()
        if base_a is not None:
            a_cols["baseline_corr"][sl] = base_a.cpu().double().numpy()
        col_best, col_arg = filled.max(0)
        col_best, col_arg = col_best.cpu().double(), col_arg.cpu() + lo
        take = col_best > b_best
        b_best = torch.where(take, col_best, b_best)
        b_arg = torch.where(take, col_arg, b_arg)
        if baseline:
            rotated = acc.max_rotated("b", seed, first_group=group[0]).cpu().double()
            b_base = torch.maximum(b_base, torch.nan_to_num(rotated, nan=float("-inf")))
    b_cols = _empty_side(res_b, sizes_b)
    b_cols["max_corr"] = b_best.numpy()
    b_cols["arg"] = b_arg.numpy()
    if baseline:
        b_cols["baseline_corr"] = b_base.numpy()
    table_a = _side_table(a_cols, res_b, sizes_b, threshold, baseline)
    table_b = _side_table(b_cols, res_a, sizes_a, threshold, baseline)
    return UnitCorrelations(table_a, table_b, n_tokens, float(threshold), len(groups))


def _sites(model: nn.Module, spec: Any, name: str) -> list[Site]:
    sites = resolve_sites(model, spec)
    attn = [s.name for s in sites if s.hook == "attn"]
    if attn:
        raise NeuronAtlasError(
            f"unit_correlations correlates units, not attention maps; {name} includes "
            f"{attn}. Use unit sites such as 'mlp' or 'resid'."
        )
    return sites


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _batch_source(batches: Any) -> Callable[[], Iterator[Any]]:
    if callable(batches):
        return lambda: iter(batches())
    if isinstance(batches, (str, bytes, os.PathLike)) or not isinstance(batches, Iterable):
        raise DataError(
            "unit_correlations expects batches: an iterable of Batch objects or model inputs "
            f"(tensors or dicts of tensors), or a function returning one; got {type(batches).__name__}."
        )
    return lambda: iter(batches)


def _one_shot(batches: Any) -> bool:
    return not callable(batches) and iter(batches) is batches


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _probe(
    model_a: nn.Module, model_b: nn.Module, res_a: list[Site], res_b: list[Site], first: Any
) -> tuple[list[int], list[int]]:
    """Units per site of both models, from one forward pass of the first batch."""
    from neuronatlas.record import Recorder

    batch = next(as_batches([first]))
    sizes = []
    for model, sites in ((model_a, res_a), (model_b, res_b)):
        with Recorder(model, sites, stop_after_last=True) as rec, torch.inference_mode():
            rec.run(model, *batch.args, **batch.kwargs)
            acts = rec.pop()
        sizes.append([int(acts[s.name].shape[-1]) for s in sites])
    return sizes[0], sizes[1]


def _rows(
    model_a: nn.Module,
    model_b: nn.Module,
    rec_a: Any,
    rec_b: Any,
    batch: Any,
    sites_a: list[Site],
    sites_b: list[Site],
) -> tuple[Tensor, Tensor]:
    """``(n, units_a)`` and ``(n, units_b)`` activations at the batch's valid positions."""
    from neuronatlas.data import bookkeeping_for

    model_a(*batch.args, **batch.kwargs)
    acts_a = rec_a.pop()
    if model_b is not model_a:  # the same model feeds both recorders in one call
        model_b(*batch.args, **batch.kwargs)
    acts_b = rec_b.pop()
    n_pos = {int(t.shape[1]) for t in (*acts_a.values(), *acts_b.values())}
    if len(n_pos) != 1:
        shapes = {k: tuple(v.shape) for k, v in (*acts_a.items(), *acts_b.items())}
        raise DataError(
            f"The sites of the two models have different numbers of positions {shapes}; "
            "correlations need the same positions in every site. Choose sites with one "
            "activation per token (such as 'mlp' or 'resid')."
        )
    _, _, mask = bookkeeping_for(batch, n_pos.pop())
    keep = mask.reshape(-1)

    def flat(acts: dict[str, Tensor], sites: list[Site]) -> Tensor:
        parts = [acts[s.name].reshape(-1, acts[s.name].shape[-1]) for s in sites]
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return x[keep.to(x.device)]

    return flat(acts_a, sites_a), flat(acts_b, sites_b)


def _empty_side(sites: list[Site], sizes: list[int]) -> dict[str, np.ndarray]:
    n = sum(sizes)
    return {
        "site": np.repeat([s.name for s in sites], sizes),
        "layer": np.repeat([-1 if s.layer is None else s.layer for s in sites], sizes),
        "unit": np.concatenate([np.arange(k) for k in sizes]),
        "max_corr": np.full(n, np.nan),
        "arg": np.full(n, -1, dtype=np.int64),
        "baseline_corr": np.full(n, np.nan),
    }


def _side_table(
    cols: dict[str, np.ndarray],
    other: list[Site],
    other_sizes: list[int],
    threshold: float,
    baseline: bool,
) -> pd.DataFrame:
    names = np.repeat([s.name for s in other], other_sizes)
    units = np.concatenate([np.arange(k) for k in other_sizes])
    arg = cols["arg"]
    best = np.where(np.isfinite(cols["max_corr"]), cols["max_corr"], np.nan)
    base = np.where(np.isfinite(cols["baseline_corr"]), cols["baseline_corr"], np.nan)
    has = (arg >= 0) & np.isfinite(best)
    table = pd.DataFrame(
        {
            "site": cols["site"],
            "layer": pd.array(np.where(cols["layer"] >= 0, cols["layer"], None), dtype="Int32"),
            "unit": cols["unit"].astype(np.int32),
            "max_corr": best,
            "match_site": np.where(has, names[np.clip(arg, 0, None)], None),
            "match_unit": pd.array(
                np.where(has, units[np.clip(arg, 0, None)], None), dtype="Int32"
            ),
        }
    )
    if baseline:
        table["baseline_corr"] = base
        table["universal_excess"] = best - base
        with np.errstate(invalid="ignore"):
            table["label_universal"] = np.asarray(best - base > threshold, dtype=bool)
    return table
