"""Steering: change what a model does by editing its activations, with the effect measured.

Methods (each cites its paper): :func:`caa` (Contrastive Activation Addition),
:func:`function_vector` (function vectors with causal-indirect-effect head selection),
:func:`transport` (Linear activation transport), :func:`dac_generate` (Dynamic Activation
Composition) and :func:`subspace_illusion` (the subspace-patching faithfulness check).
Evaluation: :func:`sweep` over sites × coefficients with a behaviour metric and a fluency cost.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from neuronatlas.steer import SteeringVector
    >>> v = SteeringVector("transformer.h.1", "caa", {"vector": torch.ones(4)})
    >>> v.edit(2.0)
    add(vector=(4,), coef=2)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neuronatlas._lazy import lazy_exports

_EXPORTS = {
    "dac_generate": "neuronatlas.steer._dac",
    "top_p_kl": "neuronatlas.steer._dac",
    "collect": "neuronatlas.steer._data",
    "encode": "neuronatlas.steer._data",
    "SteeringError": "neuronatlas.steer._errors",
    "fluency": "neuronatlas.steer._eval",
    "generate": "neuronatlas.steer._eval",
    "generation_rate": "neuronatlas.steer._eval",
    "logprob_margin": "neuronatlas.steer._eval",
    "sweep": "neuronatlas.steer._eval",
    "function_vector": "neuronatlas.steer._fv",
    "head_outputs": "neuronatlas.steer._fv",
    "indirect_effects": "neuronatlas.steer._fv",
    "downstream_weight": "neuronatlas.steer._illusion",
    "row_null_split": "neuronatlas.steer._illusion",
    "subspace_illusion": "neuronatlas.steer._illusion",
    "METHODS": "neuronatlas.steer._methods",
    "apply_transport": "neuronatlas.steer._methods",
    "caa": "neuronatlas.steer._methods",
    "edit_for": "neuronatlas.steer._methods",
    "register_method": "neuronatlas.steer._methods",
    "transport": "neuronatlas.steer._methods",
    "transport_maps": "neuronatlas.steer._methods",
    "load_sweep": "neuronatlas.steer._store",
    "save_sweep": "neuronatlas.steer._store",
    "SteeringVector": "neuronatlas.steer._vector",
    "data_hash": "neuronatlas.steer._vector",
    "load_vectors": "neuronatlas.steer._vector",
    "save_vectors": "neuronatlas.steer._vector",
}

if TYPE_CHECKING:
    from neuronatlas.steer._dac import dac_generate as dac_generate
    from neuronatlas.steer._dac import top_p_kl as top_p_kl
    from neuronatlas.steer._data import collect as collect
    from neuronatlas.steer._data import encode as encode
    from neuronatlas.steer._errors import SteeringError as SteeringError
    from neuronatlas.steer._eval import fluency as fluency
    from neuronatlas.steer._eval import generate as generate
    from neuronatlas.steer._eval import generation_rate as generation_rate
    from neuronatlas.steer._eval import logprob_margin as logprob_margin
    from neuronatlas.steer._eval import sweep as sweep
    from neuronatlas.steer._fv import function_vector as function_vector
    from neuronatlas.steer._fv import head_outputs as head_outputs
    from neuronatlas.steer._fv import indirect_effects as indirect_effects
    from neuronatlas.steer._illusion import downstream_weight as downstream_weight
    from neuronatlas.steer._illusion import row_null_split as row_null_split
    from neuronatlas.steer._illusion import subspace_illusion as subspace_illusion
    from neuronatlas.steer._methods import METHODS as METHODS
    from neuronatlas.steer._methods import apply_transport as apply_transport
    from neuronatlas.steer._methods import caa as caa
    from neuronatlas.steer._methods import edit_for as edit_for
    from neuronatlas.steer._methods import register_method as register_method
    from neuronatlas.steer._methods import transport as transport
    from neuronatlas.steer._methods import transport_maps as transport_maps
    from neuronatlas.steer._store import load_sweep as load_sweep
    from neuronatlas.steer._store import save_sweep as save_sweep
    from neuronatlas.steer._vector import SteeringVector as SteeringVector
    from neuronatlas.steer._vector import data_hash as data_hash
    from neuronatlas.steer._vector import load_vectors as load_vectors
    from neuronatlas.steer._vector import save_vectors as save_vectors

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "METHODS",
    "SteeringError",
    "SteeringVector",
    "apply_transport",
    "caa",
    "collect",
    "dac_generate",
    "data_hash",
    "downstream_weight",
    "edit_for",
    "encode",
    "fluency",
    "function_vector",
    "generate",
    "generation_rate",
    "head_outputs",
    "indirect_effects",
    "load_sweep",
    "load_vectors",
    "logprob_margin",
    "register_method",
    "row_null_split",
    "save_sweep",
    "save_vectors",
    "subspace_illusion",
    "sweep",
    "top_p_kl",
    "transport",
    "transport_maps",
]
