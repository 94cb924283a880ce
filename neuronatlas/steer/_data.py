"""Inputs of steering methods: texts or token ids, batched, and the activations they produce."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from neuronatlas.record import Recorder
from neuronatlas.sites import Site, resolve_sites
from neuronatlas.steer._errors import SteeringError

__all__ = ["Inputs", "Reduce", "batches", "collect", "encode", "forward_logits", "stream"]

Inputs = Sequence[str] | Sequence[Sequence[int]] | Sequence[Tensor]
Reduce = Literal["last", "mean", "all"]


def encode(inputs: Inputs, tokenizer: Any = None, *, what: str = "inputs") -> list[Tensor]:
    """Token ids of each input as a 1-D int64 tensor.

    Args:
        inputs: strings (tokenized with ``tokenizer``, without adding special tokens unless
            the tokenizer always does), or token-id sequences / tensors.
        tokenizer: a Hugging Face tokenizer, needed for strings.
        what: the inputs' name, for messages.
    """
    if isinstance(inputs, str | Tensor) or not isinstance(inputs, Sequence):
        raise SteeringError(
            f"{what}: expected a list of texts or of token-id sequences; got {type(inputs).__name__}."
        )
    if len(inputs) == 0:
        raise SteeringError(f"{what}: the list is empty; give at least one example.")
    out = []
    for i, x in enumerate(inputs):
        if isinstance(x, str):
            if tokenizer is None:
                raise SteeringError(f"{what}: texts need a tokenizer (pass tokenizer=...).")
            ids = torch.as_tensor(tokenizer(x)["input_ids"], dtype=torch.int64)
        else:
            ids = torch.as_tensor(x, dtype=torch.int64).reshape(-1)
        if ids.numel() == 0:
            raise SteeringError(f"{what}[{i}] has no tokens.")
        out.append(ids)
    return out


def batches(
    seqs: Sequence[Tensor], batch_size: int, pad_id: int = 0
) -> Iterator[tuple[Tensor, Tensor]]:
    """Right-padded ``(input_ids, attention_mask)`` batches of ``batch_size`` sequences."""
    if batch_size < 1:
        raise SteeringError(f"batch_size must be >= 1; got {batch_size}.")
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i : i + batch_size]
        n = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), n), pad_id, dtype=torch.int64)
        mask = torch.zeros((len(chunk), n), dtype=torch.int64)
        for j, s in enumerate(chunk):
            ids[j, : len(s)] = s
            mask[j, : len(s)] = 1
        yield ids, mask


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def forward_logits(model: nn.Module, ids: Tensor, mask: Tensor) -> Tensor:
    """The model's logits ``(batch, pos, vocab)`` for one padded batch."""
    dev = _device(model)
    out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev))
    logits = out.logits if hasattr(out, "logits") else out
    if not isinstance(logits, Tensor) or logits.dim() != 3:
        raise SteeringError(
            "Expected a causal LM returning logits (batch, pos, vocab) when called as "
            f"model(input_ids=..., attention_mask=...); got {type(out).__name__}."
        )
    return logits


@torch.no_grad()
def stream(
    model: nn.Module,
    seqs: Sequence[Tensor],
    sites: str | Site | Sequence[str | Site],
    *,
    batch_size: int = 16,
    edits: Any = None,
) -> Iterator[tuple[dict[str, Tensor], Tensor]]:
    """Per padded batch: ``({site name: (batch, pos, unit) activations}, (batch, pos) mask)``.

    Activations stay on the model's device; nothing is kept between batches (memory does not
    grow with the number of sequences).
    """
    from neuronatlas.intervene import intervene

    resolved = resolve_sites(model, sites)
    dev = _device(model)
    with contextlib.ExitStack() as stack:
        if edits:
            stack.enter_context(intervene(model, edits))
        rec = stack.enter_context(Recorder(model, resolved))
        for ids, mask in batches(seqs, batch_size):
            model(input_ids=ids.to(dev), attention_mask=mask.to(dev))
            acts = rec.pop()
            for name, a in acts.items():
                if a.shape[1] != mask.shape[1]:
                    raise SteeringError(
                        f"Site {name!r}: its activation has {a.shape[1]} positions for "
                        f"{mask.shape[1]} tokens; steer a site with one position per token."
                    )
            yield acts, mask.to(torch.bool)


def collect(
    model: nn.Module,
    seqs: Sequence[Tensor],
    sites: str | Site | Sequence[str | Site],
    *,
    reduce: Reduce = "last",
    batch_size: int = 16,
    edits: Any = None,
) -> dict[str, Tensor]:
    """Activations of ``sites`` on token sequences, one row per sequence or per token.

    Args:
        model: called as ``model(input_ids=..., attention_mask=...)``.
        seqs: 1-D token-id tensors (see :func:`encode`).
        sites: a site spec.
        reduce: ``"last"`` (the last token of each sequence: ``(n_seqs, unit)``), ``"mean"``
            (the mean over its tokens: ``(n_seqs, unit)``) or ``"all"`` (every token:
            ``(n_tokens, unit)``, held in memory: for large corpora stream with
            :func:`stream` instead).
        batch_size: sequences per forward pass.
        edits: an optional ``{site: edit}`` mapping applied while recording.

    Returns:
        ``{site name: float32 tensor on the CPU}``.
    """
    if reduce not in ("last", "mean", "all"):
        raise SteeringError(f"reduce must be 'last', 'mean' or 'all'; got {reduce!r}.")
    parts: dict[str, list[Tensor]] = {}
    for acts, m in stream(model, seqs, sites, batch_size=batch_size, edits=edits):
        last = m.sum(1) - 1
        for name, a in acts.items():
            a = a.float().cpu()
            if reduce == "last":
                row = a[torch.arange(a.shape[0]), last]
            elif reduce == "mean":
                w = m.unsqueeze(-1).float()
                row = (a * w).sum(1) / w.sum(1)
            else:
                row = a[m]
            parts.setdefault(name, []).append(row)
    out = {name: torch.cat(p) for name, p in parts.items()}
    for name, a in out.items():
        bad = int((~torch.isfinite(a)).any(-1).sum())
        if bad:
            raise SteeringError(
                f"Site {name!r}: {bad} of {a.shape[0]} activation rows hold NaN/Inf; steering "
                "statistics would be meaningless. Check the model's dtype and inputs."
            )
    return out
