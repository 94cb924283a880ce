"""How good an SAE is: reconstruction, sparsity, dead and dense features, loss recovered.

Definitions (over the evaluated inputs ``x`` with reconstructions ``x̂``, ``N`` inputs of
``d_in`` values):

- ``mse = Σ‖x − x̂‖² / (N · d_in)`` (per value);
- ``fvu = Σ‖x − x̂‖² / Σ‖x − x̄‖²`` (fraction of variance unexplained, ``x̄`` the mean input);
  ``variance_explained = 1 − fvu``;
- ``l0``: mean number of features with ``z > 0`` per input;
- ``dead``: features that never fire on the evaluated inputs; ``dense``: features that fire on
  more than ``dense_threshold`` of them (default 10%);
- rows with NaN/Inf are skipped and counted (``nonfinite_rows``), never averaged in.

For language models, :func:`ce_loss_recovered` splices the reconstruction into the forward pass
at the SAE's site and compares the next-token cross-entropy with the clean model's and with the
site zero-ablated: ``loss_recovered = (CE_zero − CE_sae) / (CE_zero − CE_clean)``
(1: as good as the model; 0: no better than deleting the site).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from neuronatlas.intervene import intervene
from neuronatlas.sae._base import SAEError, SparseAutoencoder
from neuronatlas.sae._data import batches

__all__ = ["ce_loss_recovered", "evaluate_sae"]


@torch.no_grad()
def evaluate_sae(
    sae: SparseAutoencoder,
    data: Any,
    *,
    site: str | None = None,
    batch_size: int = 4096,
    max_samples: int | None = None,
    dense_threshold: float = 0.1,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Reconstruction and sparsity metrics of ``sae`` on ``data``, streamed batch by batch.

    Args:
        sae: the SAE.
        data: an activation store (read in order, chunk by chunk), a ``(n, d_in)`` tensor, or
            an iterable of ``(batch, d_in)`` tensors.
        site: the store site (when it holds several).
        batch_size: rows per batch (stores and tensors).
        max_samples: stop after this many inputs.
        dense_threshold: firing frequency above which a feature counts as dense.
        device: where to compute (default: the SAE's device).

    Returns:
        ``{"n_samples", "mse", "fvu", "variance_explained", "l0", "dead", "dense",
        "nonfinite_rows", "freq"}`` with ``freq`` the ``(d_sae,)`` firing frequencies (numpy).

    Examples:
        >>> import torch
        >>> from neuronatlas.sae import create_sae
        >>> m = evaluate_sae(create_sae("topk", 4, 8, k=2), torch.randn(100, 4), batch_size=10)
        >>> m["n_samples"], m["l0"] <= 2
        (100, True)
    """
    dev = torch.device(device) if device is not None else sae.W_dec.device
    sae = sae.to(dev)
    n = 0
    nonfinite = 0
    err = torch.zeros((), dtype=torch.float64, device=dev)
    s1 = torch.zeros(sae.d_in, dtype=torch.float64, device=dev)
    s2 = torch.zeros((), dtype=torch.float64, device=dev)
    fired = torch.zeros(sae.d_sae, dtype=torch.int64, device=dev)
    stream = batches(
        data, site=site, batch_size=batch_size, shuffle=False, epochs=1, drop_last=False, device=dev
    )
    for x in stream:
        if max_samples is not None and n >= max_samples:
            break
        if max_samples is not None:
            x = x[: max_samples - n]
        ok = torch.isfinite(x).all(dim=1)
        if not bool(ok.all()):
            nonfinite += int((~ok).sum())
            x = x[ok]
        if not len(x):
            continue
        z = sae.encode(x)
        x_hat = sae.decode(z)
        xd = x.double()
        err += (x_hat.double() - xd).pow(2).sum()
        s1 += xd.sum(0)
        s2 += xd.pow(2).sum()
        fired += (z > 0).sum(0)
        n += len(x)
    if n == 0:
        raise SAEError("No finite input rows to evaluate the SAE on.")
    total_var = float(s2 - s1.pow(2).sum() / n)
    fvu = float(err) / total_var if total_var > 0 else float("nan")
    freq = (fired.double() / n).cpu().numpy()
    return {
        "n_samples": n,
        "mse": float(err) / (n * sae.d_in),
        "fvu": fvu,
        "variance_explained": 1.0 - fvu,
        "l0": float(fired.sum()) / n,
        "dead": int((fired == 0).sum()),
        "dense": int((freq > dense_threshold).sum()),
        "dense_threshold": dense_threshold,
        "nonfinite_rows": nonfinite,
        "freq": freq,
    }


def _next_token_ce(model: nn.Module, batch: Any, dev: torch.device) -> tuple[float, int]:
    """Summed next-token cross-entropy of a batch and the number of predicted tokens."""
    if isinstance(batch, Tensor):
        batch = {"input_ids": batch}
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise SAEError(
            "Loss-recovered batches must be input_ids tensors or dicts with 'input_ids' (and "
            f"'attention_mask'); got {type(batch).__name__}."
        )
    ids = batch["input_ids"].to(dev)
    mask = batch.get("attention_mask")
    mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.to(dev).bool()
    out = model(input_ids=ids, attention_mask=mask.long())
    logits = getattr(out, "logits", None)
    if logits is None and isinstance(out, Tensor) and out.dim() == 3:
        logits = out
    if logits is None or logits.dim() != 3:
        raise SAEError(
            "Loss recovered needs a language model whose output has next-token logits "
            "(batch, pos, vocab), such as a *ForCausalLM / *LMHeadModel; this model returned "
            f"{type(out).__name__}."
        )
    valid = mask[:, 1:] & mask[:, :-1]
    ce = nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        ids[:, 1:].reshape(-1),
        reduction="none",
    )
    return float(ce[valid.reshape(-1)].sum()), int(valid.sum())


@torch.no_grad()
def ce_loss_recovered(
    model: nn.Module,
    sae: SparseAutoencoder,
    site: str,
    data: Iterable[Any],
    *,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Next-token cross-entropy clean, with the SAE's reconstruction spliced in, and zeroed.

    Args:
        model: a causal language model (returns ``logits``).
        sae: the SAE of ``site``.
        site: where the SAE reads (a site name of ``model``).
        data: batches: ``input_ids`` tensors or dicts with ``input_ids`` and
            ``attention_mask`` (padding is excluded from the loss).
        device: where to run (default: the model's device).

    Returns:
        ``{"ce_clean", "ce_sae", "ce_zero", "loss_recovered", "n_tokens"}``.
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    sae = sae.to(dev)
    batch_list = list(data)
    if not batch_list:
        raise SAEError("ce_loss_recovered needs at least one batch of token ids.")

    def run(fn: Callable[[Tensor], Tensor] | None) -> tuple[float, int]:
        total, count = 0.0, 0
        for b in batch_list:
            if fn is None:
                s, c = _next_token_ce(model, b, dev)
            else:
                with intervene(model, {site: lambda t, ctx: fn(t)}):
                    s, c = _next_token_ce(model, b, dev)
            total, count = total + s, count + c
        return total / max(count, 1), count

    def reconstruct(t: Tensor) -> Tensor:
        if t.shape[-1] != sae.d_in:
            raise SAEError(
                f"Site {site!r} carries {t.shape[-1]} units; the SAE reads d_in={sae.d_in}."
            )
        return sae(t.to(sae.W_dec.dtype))

    clean, n_tokens = run(None)
    with_sae, _ = run(reconstruct)
    zero, _ = run(torch.zeros_like)
    denom = zero - clean
    return {
        "ce_clean": clean,
        "ce_sae": with_sae,
        "ce_zero": zero,
        "loss_recovered": (zero - with_sae) / denom if denom != 0 else float("nan"),
        "n_tokens": n_tokens,
    }
