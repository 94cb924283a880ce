"""Saving and loading SAEs in SAELens's on-disk layout.

A folder with two files, exactly as SAELens 6 writes and reads them
(``SAE.save_model`` / ``SAE.load_from_disk``):

- ``sae_weights.safetensors``: ``W_enc (d_in, d_sae)``, ``b_enc (d_sae)``, ``W_dec (d_sae, d_in)``,
  ``b_dec (d_in)`` and, for JumpReLU, ``threshold (d_sae)``; float32;
- ``cfg.json``: ``architecture`` (``"standard"``, ``"topk"``, ``"jumprelu"``), ``d_in``,
  ``d_sae``, ``dtype``, ``device``, ``apply_b_dec_to_input``, ``normalize_activations``
  (always ``"none"``: the input scale is folded into the weights), ``reshape_activations``,
  ``metadata`` (``hook_name`` = the site, ``model_name``, and under ``neuronatlas`` the
  architecture and settings it was trained with), plus ``k`` and
  ``rescale_acts_by_decoder_norm`` for TopK.

ReLU SAEs are SAELens ``"standard"`` SAEs; BatchTopK SAEs are saved as ``"jumprelu"`` with
every threshold equal to the learned global θ (as SAELens saves them), and load back as
JumpReLU SAEs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from neuronatlas.sae._base import SAEError, SparseAutoencoder
from neuronatlas.sae._registry import get_architecture

__all__ = ["SAE_CFG", "SAE_WEIGHTS", "load_sae", "save_sae"]

SAE_WEIGHTS = "sae_weights.safetensors"
SAE_CFG = "cfg.json"

# SAELens architecture name -> ours
_FROM_SAELENS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}


def save_sae(
    sae: SparseAutoencoder,
    path: str | os.PathLike[str],
    *,
    site: str | None = None,
    model_name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``sae`` to the folder ``path`` in SAELens's layout; returns the folder.

    Args:
        sae: the SAE.
        path: folder (created); existing files of the layout are replaced.
        site: the site it reads (``metadata.hook_name``).
        model_name: the model (``metadata.model_name``).
        metadata: more ``metadata`` entries (JSON).

    Examples:
        >>> import tempfile
        >>> from neuronatlas.sae import create_sae
        >>> folder = save_sae(create_sae("topk", 8, 16, k=2), tempfile.mkdtemp())
        >>> sorted(p.name for p in folder.iterdir())
        ['cfg.json', 'sae_weights.safetensors']
    """
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sae.saelens_state().items()
    }
    meta: dict[str, Any] = {
        "hook_name": site,
        "model_name": model_name,
        "neuronatlas": {"architecture": sae.architecture, "settings": sae.settings()},
    }
    meta.update(metadata or {})
    cfg = {
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": meta,
        **sae.saelens_fields(),
    }
    tmp = folder / (SAE_WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, folder / SAE_WEIGHTS)
    tmp_cfg = folder / (SAE_CFG + ".tmp")
    tmp_cfg.write_text(json.dumps(cfg, indent=2) + "\n")
    os.replace(tmp_cfg, folder / SAE_CFG)
    return folder


def read_cfg(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``cfg.json`` of an SAE folder."""
    file = Path(path) / SAE_CFG
    if not file.is_file():
        raise SAEError(
            f"{str(path)!r} is not an SAE folder: it has no {SAE_CFG}. An SAE folder holds "
            f"{SAE_CFG} and {SAE_WEIGHTS} (SAELens's layout; neuronatlas sae train writes one)."
        )
    try:
        cfg = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise SAEError(f"Cannot read {str(file)!r}: {exc}.") from exc
    if not isinstance(cfg, dict):
        raise SAEError(f"{str(file)!r} must hold a JSON object; got {type(cfg).__name__}.")
    return cfg


def load_sae(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> SparseAutoencoder:
    """Load an SAE folder written by :func:`save_sae` or by SAELens (``save_model``).

    Supported: SAELens architectures ``standard``, ``topk`` and ``jumprelu`` (BatchTopK SAEs
    are saved by SAELens as ``jumprelu``), with ``normalize_activations="none"`` and
    ``reshape_activations="none"``.

    Raises:
        SAEError: the folder is not an SAE, or holds an architecture or setting not supported.
    """
    from safetensors.torch import load_file

    folder = Path(path)
    cfg = read_cfg(folder)
    arch = cfg.get("architecture")
    if arch not in _FROM_SAELENS:
        raise SAEError(
            f"The SAE in {str(folder)!r} has SAELens architecture {arch!r}; neuronatlas reads "
            f"{sorted(_FROM_SAELENS)}."
        )
    for key in ("normalize_activations", "reshape_activations"):
        if cfg.get(key, "none") != "none":
            raise SAEError(
                f"The SAE in {str(folder)!r} has {key}={cfg[key]!r}; neuronatlas reads SAEs "
                f"with {key}='none'. In SAELens, fold it into the weights first (e.g. "
                "sae.fold_activation_norm_scaling_factor(...)) and save again."
            )
    if not (folder / SAE_WEIGHTS).is_file():
        raise SAEError(f"The SAE folder {str(folder)!r} has no {SAE_WEIGHTS}.")
    state = load_file(str(folder / SAE_WEIGHTS))
    missing = [k for k in ("W_enc", "b_enc", "W_dec", "b_dec") if k not in state]
    if missing:
        raise SAEError(f"{str(folder / SAE_WEIGHTS)!r} lacks the weights {missing}.")
    cls = get_architecture(_FROM_SAELENS[arch])
    state = {k: v.float() for k, v in state.items()}
    sae = cls.from_saelens(cfg, state)
    return sae.to(device)
