"""Sparse autoencoders trained on recorded activations; their features become atlas units.

- architectures, one file each, by name (:func:`create_sae`, :func:`architectures`):
  ``relu`` (ReLU + L1), ``topk``, ``batchtopk``, ``jumprelu``;
- :func:`train_sae`: streamed minibatches from an activation store (or tensors), Adam,
  unit-norm decoder, AuxK / resampling, checkpoints and resume;
- :func:`evaluate_sae` (MSE, variance explained, L0, dead/dense) and
  :func:`ce_loss_recovered` (the reconstruction spliced into a language model);
- :func:`save_sae` / :func:`load_sae`: SAELens's on-disk layout;
- :func:`map_sae`: an atlas's stored activations through an SAE, its features added to the
  atlas as units of a site ``"<site>@sae:<name>"``;
- :class:`SyntheticFeatures` and :func:`mmcs`: ground truth in superposition.

See ``docs/sae.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neuronatlas._lazy import lazy_exports

_EXPORTS = {
    "SAEError": "neuronatlas.sae._base",
    "SparseAutoencoder": "neuronatlas.sae._base",
    "BatchTopKSAE": "neuronatlas.sae._batchtopk",
    "ce_loss_recovered": "neuronatlas.sae._eval",
    "evaluate_sae": "neuronatlas.sae._eval",
    "load_sae": "neuronatlas.sae._io",
    "save_sae": "neuronatlas.sae._io",
    "JumpReLUSAE": "neuronatlas.sae._jumprelu",
    "map_sae": "neuronatlas.sae._map",
    "architectures": "neuronatlas.sae._registry",
    "create_sae": "neuronatlas.sae._registry",
    "get_architecture": "neuronatlas.sae._registry",
    "register_architecture": "neuronatlas.sae._registry",
    "ReLUSAE": "neuronatlas.sae._relu",
    "SyntheticFeatures": "neuronatlas.sae._synthetic",
    "mmcs": "neuronatlas.sae._synthetic",
    "TopKSAE": "neuronatlas.sae._topk",
    "TrainResult": "neuronatlas.sae._train",
    "train_sae": "neuronatlas.sae._train",
}

if TYPE_CHECKING:
    from neuronatlas.sae._base import SAEError as SAEError
    from neuronatlas.sae._base import SparseAutoencoder as SparseAutoencoder
    from neuronatlas.sae._batchtopk import BatchTopKSAE as BatchTopKSAE
    from neuronatlas.sae._eval import ce_loss_recovered as ce_loss_recovered
    from neuronatlas.sae._eval import evaluate_sae as evaluate_sae
    from neuronatlas.sae._io import load_sae as load_sae
    from neuronatlas.sae._io import save_sae as save_sae
    from neuronatlas.sae._jumprelu import JumpReLUSAE as JumpReLUSAE
    from neuronatlas.sae._map import map_sae as map_sae
    from neuronatlas.sae._registry import architectures as architectures
    from neuronatlas.sae._registry import create_sae as create_sae
    from neuronatlas.sae._registry import get_architecture as get_architecture
    from neuronatlas.sae._registry import register_architecture as register_architecture
    from neuronatlas.sae._relu import ReLUSAE as ReLUSAE
    from neuronatlas.sae._synthetic import SyntheticFeatures as SyntheticFeatures
    from neuronatlas.sae._synthetic import mmcs as mmcs
    from neuronatlas.sae._topk import TopKSAE as TopKSAE
    from neuronatlas.sae._train import TrainResult as TrainResult
    from neuronatlas.sae._train import train_sae as train_sae

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "BatchTopKSAE",
    "JumpReLUSAE",
    "ReLUSAE",
    "SAEError",
    "SparseAutoencoder",
    "SyntheticFeatures",
    "TopKSAE",
    "TrainResult",
    "architectures",
    "ce_loss_recovered",
    "create_sae",
    "evaluate_sae",
    "get_architecture",
    "load_sae",
    "map_sae",
    "mmcs",
    "register_architecture",
    "save_sae",
    "train_sae",
]
