"""Training an SAE: streamed minibatches, Adam, unit-norm decoder, dead features, checkpoints.

One loop for every architecture. TopK and BatchTopK train with sparse decoding and the AuxK
loss (:mod:`neuronatlas.sae._sparse`); ReLU and JumpReLU with autograd on their loss, and
ReLU with dead-feature resampling. A checkpoint holds everything the next step depends on
(weights, Adam's moments, the step, the dead-feature counters, the resampling generator), so
a resumed run reproduces the uninterrupted one exactly (the data are replayed to the step).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neuronatlas.sae._base import SAEError, SparseAutoencoder, check_float, check_int
from neuronatlas.sae._data import batches, data_width, n_rows
from neuronatlas.sae._sparse import sparse_step

__all__ = ["CHECKPOINT", "TrainResult", "train_sae"]

CHECKPOINT = "checkpoint.pt"
_FORMAT = "neuronatlas.sae.checkpoint"

# options that must match for a checkpoint to be resumed
_RESUME_KEYS = (
    "batch_size", "lr", "betas", "warmup_steps", "decay_frac", "normalize", "dead_window",
    "dead_strategy", "aux_k", "aux_coefficient", "decoder_lr_scale", "resample_at", "seed",
    "total_steps",
)  # fmt: skip


@dataclass
class TrainResult:
    """What :func:`train_sae` returns.

    Attributes:
        sae: the trained SAE (the one passed in, trained in place).
        log: one dict per logged step: ``step, samples, lr, loss, mse`` (and ``aux``, ``l1``
            or ``l0_loss``), ``l0`` (mean active features per input), ``dead``.
        steps, samples: optimizer steps and training inputs, in total.
        seconds: training time of this call (a resumed run counts its own part).
        resumed_at_samples: ``samples`` when this call resumed from a checkpoint (else 0).
        nonfinite_rows: input rows with NaN/Inf, skipped and counted.
        options: the training options.
    """

    sae: SparseAutoencoder
    log: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    nonfinite_rows: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    resumed_at_samples: int = 0

    @property
    def samples_per_s(self) -> float:
        """Training inputs per second of this call (a resumed run counts its own part)."""
        done = self.samples - self.resumed_at_samples
        return done / self.seconds if self.seconds > 0 else float("nan")


def train_sae(
    sae: SparseAutoencoder,
    data: Any,
    *,
    site: str | None = None,
    steps: int | None = None,
    n_samples: int | None = None,
    batch_size: int = 4096,
    lr: float = 4e-4,
    betas: tuple[float, float] = (0.9, 0.999),
    warmup_steps: int = 0,
    decay_frac: float = 0.0,
    normalize: bool = True,
    dead_window: int | None = None,
    dead_strategy: str | None = None,
    aux_k: int | None = None,
    aux_coefficient: float = 1 / 32,
    decoder_lr_scale: float = 10.0,
    resample_at: tuple[float, ...] = (0.25, 0.5, 0.75),
    seed: int = 0,
    device: str | torch.device | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool | Callable[[dict[str, float]], None] = False,
    log_every: int = 50,
) -> TrainResult:
    """Train ``sae`` on ``data``; returns the trained SAE and its training log.

    Args:
        sae: a fresh SAE (:func:`~neuronatlas.sae.create_sae`), or the one a checkpoint was
            written for when resuming (same architecture and settings).
        data: an :class:`~neuronatlas.store.ActivationStore` (read as shuffled minibatches,
            chunk by chunk), a ``(n, d_in)`` tensor, or an iterable of ``(batch, d_in)``
            tensors (read once, in the order given; needed again when resuming).
        site: the store site (when the store holds several).
        steps: optimizer steps; or ``n_samples`` training inputs; default one pass over a
            store or tensor, or until an iterable ends.
        batch_size: inputs per step (stores and tensors; an iterable's batches are used as they
            come).
        lr, betas: Adam's learning rate and betas.
        warmup_steps: linear learning-rate warm-up from 0.
        decay_frac: linear decay to 0 over this last fraction of the steps (0: constant).
        normalize: scale inputs so that ``E‖x‖ = √d_in`` (one scalar, from the first batch).
        dead_window: a feature is dead when it did not fire on the last ``dead_window`` training
            inputs (default ``10 · batch_size``).
        dead_strategy: ``"aux"`` (AuxK loss; TopK and BatchTopK), ``"resample"`` (ReLU and
            JumpReLU) or ``"none"``; default the architecture's (TopK, BatchTopK: aux; ReLU:
            resample; JumpReLU: none).
        aux_k: ``k_aux`` of AuxK (default ``d_in // 2``); aux_coefficient: its α.
        decoder_lr_scale: the decoder's learning rate is ``lr`` times this. The unit-norm
            decoder rows then move as if stored at norm ``1 / decoder_lr_scale`` (Adam's
            steps are about ``lr`` per value whatever the scale), which is what the 0.1
            decoder initialization of Anthropic's April 2024 update (and SAELens) amounts to
            for the directions.
        resample_at: fractions of the steps at which dead features are resampled.
        seed: seed of the data order and of resampling.
        device: ``"cpu"``, ``"cuda"``, … (default CUDA when available).
        checkpoint_dir: write ``checkpoint.pt`` there every ``checkpoint_every`` steps and at
            the end (atomically: a killed run leaves the previous checkpoint).
        resume: continue from ``checkpoint_dir``'s checkpoint (start fresh when there is none).
        progress: True for a progress bar (rich), or a callable given each log record.
        log_every: steps between log records.

    Returns:
        :class:`TrainResult`.

    Raises:
        SAEError: bad options, data of another width, a checkpoint of other settings, or a
            checkpoint in the way when ``resume`` is False.

    Examples:
        >>> import torch
        >>> from neuronatlas.sae import create_sae, train_sae
        >>> x = torch.randn(512, 8)
        >>> res = train_sae(create_sae("topk", 8, 32, k=2), x, batch_size=64, steps=5)
        >>> res.steps, res.samples
        (5, 320)
    """
    owner = "train_sae"
    if not isinstance(sae, SparseAutoencoder):
        raise SAEError(f"train_sae expects an SAE (create_sae(...)); got {type(sae).__name__}.")
    batch_size = check_int(batch_size, "batch_size", owner)
    lr = check_float(lr, "lr", owner)
    log_every = check_int(log_every, "log_every", owner)
    warmup_steps = check_int(warmup_steps, "warmup_steps", owner, low=0)
    decay_frac = check_float(decay_frac, "decay_frac", owner)
    aux_coefficient = check_float(aux_coefficient, "aux_coefficient", owner)
    strategy = dead_strategy or sae.dead_strategy
    if strategy not in ("aux", "resample", "none"):
        raise SAEError(f"dead_strategy must be 'aux', 'resample' or 'none'; got {strategy!r}.")
    sparse = sae.sparse_codes(torch.zeros(1, sae.d_sae)) is not None
    if strategy == "aux" and not sparse:
        raise SAEError(
            f"The AuxK loss is defined for TopK-style SAEs; a {sae.architecture!r} SAE revives "
            "dead features with dead_strategy='resample' (or 'none')."
        )
    width = data_width(data, site)
    if width is not None and width != sae.d_in:
        raise SAEError(f"The SAE reads d_in={sae.d_in} values; the data rows have {width}.")
    total = _total_steps(steps, n_samples, batch_size, data)
    dev = torch.device(device) if device is not None else _default_device()
    options = {
        "batch_size": batch_size, "lr": lr, "betas": list(betas), "warmup_steps": warmup_steps,
        "decay_frac": decay_frac, "normalize": bool(normalize),
        "dead_window": check_int(dead_window, "dead_window", owner) if dead_window else 10 * batch_size,
        "dead_strategy": strategy, "aux_k": aux_k or max(1, sae.d_in // 2),
        "aux_coefficient": aux_coefficient, "decoder_lr_scale": decoder_lr_scale,
        "resample_at": list(resample_at), "seed": seed,
        "total_steps": total, "device": str(dev), "site": site,
    }  # fmt: skip

    sae.to(dev)
    dec_scale = check_float(decoder_lr_scale, "decoder_lr_scale", owner, low=1e-12)
    others = [p for n, p in sae.named_parameters() if n != "W_dec"]
    opt = torch.optim.Adam(
        [{"params": others, "scale": 1.0}, {"params": [sae.W_dec], "scale": dec_scale}],
        lr=lr,
        betas=tuple(betas),
    )
    since_fired = torch.zeros(sae.d_sae, dtype=torch.int64, device=dev)
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    result = TrainResult(sae=sae, options=options)
    ckpt = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    if ckpt is not None and ckpt.exists():
        if not resume:
            raise SAEError(
                f"{str(ckpt)!r} holds a checkpoint of an earlier run; pass resume=True "
                "(--resume) to continue it, or remove it to start over."
            )
        _load_checkpoint(ckpt, sae, opt, since_fired, gen, result, options, dev)
        result.resumed_at_samples = result.samples

    stream = batches(data, site=site, batch_size=batch_size, seed=seed, device=dev)
    for _ in range(result.steps):  # replay the data to where the checkpoint stopped
        if next(stream, None) is None:
            raise SAEError("The data ended before the checkpoint's step; pass the same data.")

    resample_steps = {max(1, int(f * total)) for f in resample_at} if total else set()
    bar = _ProgressBar(total, sae) if progress is True else None
    callback = progress if callable(progress) else None
    t0 = time.perf_counter()
    try:
        while total is None or result.steps < total:
            x = next(stream, None)
            if x is None:
                break
            if result.steps == 0 and not result.log:
                _initialize(sae, x, normalize)
            x_n = x * sae.norm_scale
            if not bool(torch.isfinite(x_n.sum())):  # cheap test; rows checked only then
                finite = torch.isfinite(x_n).all(dim=1)
                result.nonfinite_rows += int((~finite).sum())
                x_n = x_n[finite]
                if not len(x_n):
                    continue
            step = result.steps
            for group in opt.param_groups:
                group["lr"] = group["scale"] * _lr_at(step, total, lr, warmup_steps, decay_frac)
            dead = since_fired >= options["dead_window"]
            if sparse:
                losses, cols, vals = sparse_step(
                    sae,
                    x_n,
                    dead if strategy == "aux" else None,
                    options["aux_k"],
                    aux_coefficient,
                )
                fired_cols = cols[vals > 0]
                l0 = fired_cols.numel() / len(x_n)
                loss = sum(losses.values())
            else:
                opt.zero_grad(set_to_none=True)
                loss, losses, z, _x_hat = sae.training_loss(x_n)
                loss.backward()
                active = z.detach() > 0
                fired_cols = torch.nonzero(active.any(0)).squeeze(1)
                l0 = float(active.sum()) / len(x_n)
            sae.project_decoder_grad()
            opt.step()
            sae.normalize_decoder()
            if sparse:
                sae.after_step(vals, len(x_n))
            since_fired += len(x_n)
            since_fired[fired_cols] = 0
            result.steps += 1
            result.samples += len(x_n)
            if strategy == "resample" and result.steps in resample_steps:
                _resample(sae, opt, x_n, since_fired >= options["dead_window"], gen)
            if result.steps % log_every == 0 or result.steps == total:
                record = {
                    "step": result.steps,
                    "samples": result.samples,
                    "lr": opt.param_groups[0]["lr"],
                    "loss": float(loss.detach() if isinstance(loss, Tensor) else loss),
                    **{k: float(v.detach()) for k, v in losses.items()},
                    "l0": float(l0),
                    "dead": int((since_fired >= options["dead_window"]).sum()),
                }
                result.log.append(record)
                if bar is not None:
                    bar.update(record)
                if callback is not None:
                    callback(record)
            if ckpt is not None and checkpoint_every and result.steps % checkpoint_every == 0:
                _save_checkpoint(ckpt, sae, opt, since_fired, gen, result)
    finally:
        result.seconds += time.perf_counter() - t0
        if bar is not None:
            bar.close()
    if ckpt is not None:
        _save_checkpoint(ckpt, sae, opt, since_fired, gen, result)
    return result


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _total_steps(
    steps: int | None, n_samples: int | None, batch_size: int, data: Any
) -> int | None:
    if steps is not None:
        return check_int(steps, "steps", "train_sae")
    if n_samples is not None:
        return max(1, check_int(n_samples, "n_samples", "train_sae") // batch_size)
    rows = n_rows(data)
    if rows is None:
        return None
    if rows < batch_size:
        raise SAEError(
            f"The data hold {rows} rows, fewer than one batch of {batch_size}; lower batch_size."
        )
    return rows // batch_size


def _lr_at(step: int, total: int | None, lr: float, warmup: int, decay_frac: float) -> float:
    scale = 1.0
    if warmup and step < warmup:
        scale = (step + 1) / warmup
    if total and decay_frac > 0:
        start = total * (1 - decay_frac)
        if step >= start:
            scale *= max(0.0, (total - step) / (total - start))
    return lr * scale


@torch.no_grad()
def _initialize(sae: SparseAutoencoder, x: Tensor, normalize: bool) -> None:
    """Input scale and decoder bias from the first batch (its finite rows)."""
    x = x[torch.isfinite(x).all(dim=1)]
    if not len(x):
        raise SAEError("The first training batch has no finite row; check the activations.")
    if normalize:
        mean_norm = float(x.norm(dim=1).mean())
        sae.norm_scale.fill_(math.sqrt(sae.d_in) / mean_norm if mean_norm > 0 else 1.0)
    sae.b_dec.copy_((x * sae.norm_scale).mean(0))


@torch.no_grad()
def _resample(
    sae: SparseAutoencoder,
    opt: torch.optim.Optimizer,
    x_n: Tensor,
    dead: Tensor,
    gen: torch.Generator,
) -> None:
    """Neuron resampling ("Towards Monosemanticity", 2023) of the dead features.

    Inputs of the batch are drawn with probability proportional to their squared
    reconstruction loss; a dead feature's decoder row becomes the chosen (centered) input
    normalized, its encoder column the same direction times 0.2 × the mean encoder norm of the
    live features, its encoder bias 0, and Adam's moments of what changed are reset.
    """
    idx = torch.nonzero(dead).squeeze(1)
    if not len(idx):
        return
    x_c = x_n - sae.b_dec if sae.apply_b_dec_to_input else x_n
    err = (sae.decode_normalized(sae.activate(sae.pre_normalized(x_n))) - x_n).pow(2).sum(1)
    weights = err.pow(2).double().cpu()
    if not float(weights.sum()) > 0:
        return
    rows = torch.multinomial(weights, len(idx), replacement=True, generator=gen).to(x_n.device)
    direction = x_c[rows]
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    alive = ~dead
    enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else torch.tensor(1.0)
    sae.W_dec[idx] = direction
    sae.W_enc[:, idx] = (direction * 0.2 * enc_norm).T
    sae.b_enc[idx] = 0.0
    for p, sl in ((sae.W_dec, (idx,)), (sae.W_enc, (slice(None), idx)), (sae.b_enc, (idx,))):
        state = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][sl] = 0.0


def _save_checkpoint(
    path: Path,
    sae: SparseAutoencoder,
    opt: torch.optim.Optimizer,
    since_fired: Tensor,
    gen: torch.Generator,
    result: TrainResult,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": _FORMAT,
        "version": 1,
        "architecture": sae.architecture,
        "settings": sae.settings(),
        "sae": {k: v.detach().cpu() for k, v in sae.state_dict().items()},
        "optimizer": opt.state_dict(),
        "since_fired": since_fired.cpu(),
        "generator": gen.get_state(),
        "steps": result.steps,
        "samples": result.samples,
        "nonfinite_rows": result.nonfinite_rows,
        "log": result.log,
        "options": {k: result.options[k] for k in _RESUME_KEYS},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_checkpoint(
    path: Path,
    sae: SparseAutoencoder,
    opt: torch.optim.Optimizer,
    since_fired: Tensor,
    gen: torch.Generator,
    result: TrainResult,
    options: dict[str, Any],
    dev: torch.device,
) -> None:
    try:
        state = torch.load(path, map_location=dev, weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise SAEError(f"Cannot read the SAE checkpoint {str(path)!r}: {exc}.") from exc
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise SAEError(f"{str(path)!r} is not a neuronatlas SAE checkpoint.")
    if state["architecture"] != sae.architecture or state["settings"] != sae.settings():
        raise SAEError(
            f"The checkpoint {str(path)!r} is of a {state['architecture']!r} SAE with "
            f"{state['settings']}; this SAE is {sae.architecture!r} with {sae.settings()}. "
            "Resume with the same architecture and settings."
        )
    mismatch = {
        k: (state["options"].get(k), options[k])
        for k in _RESUME_KEYS
        if state["options"].get(k) != options[k]
    }
    if mismatch:
        raise SAEError(
            f"The checkpoint {str(path)!r} was written with other training options "
            f"(checkpoint, now): {mismatch}. Resume with the same options."
        )
    sae.load_state_dict(state["sae"])
    opt.load_state_dict(state["optimizer"])
    since_fired.copy_(state["since_fired"])
    gen.set_state(state["generator"].cpu())
    result.steps, result.samples = int(state["steps"]), int(state["samples"])
    result.nonfinite_rows = int(state["nonfinite_rows"])
    result.log = list(state["log"])


class _ProgressBar:
    """A rich progress bar with the latest loss, L0 and dead count."""

    def __init__(self, total: int | None, sae: SparseAutoencoder) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn(f"[bold]{sae.architecture}[/] SAE"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "steps · loss {task.fields[loss]} · L0 {task.fields[l0]} · dead {task.fields[dead]}"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self.task = self.bar.add_task("train", total=total, loss="–", l0="–", dead="–")
        self.bar.start()

    def update(self, r: dict[str, float]) -> None:
        self.bar.update(
            self.task,
            completed=r["step"],
            loss=f"{r['loss']:.4g}",
            l0=f"{r['l0']:.1f}",
            dead=f"{int(r['dead'])}",
        )

    def close(self) -> None:
        self.bar.stop()
