"""Compare representations: layers with layers, models with models, models with brains.

- stimulus features from an atlas's activation store: :func:`stimulus_features`;
- CKA (linear/RBF, biased/debiased HSIC, minibatch): :func:`cka`, :class:`MinibatchCKA`,
  :func:`token_cka` (token-level, streamed from the store);
- RSA: :func:`rdm`, :func:`rdm_crossnobis`, :func:`compare_rdms`, :func:`noise_ceiling`;
- shape metrics: :func:`shape_distance`, :func:`stochastic_shape_distance`;
- topological RSA: :func:`geotopological_transform`, :func:`topological_rsa`;
- CCA / SVCCA: :func:`canonical_correlations`, :func:`svcca`;
- inference over stimuli: :func:`permutation_test`, :func:`bootstrap_ci`;
- whole atlases: :func:`compare_atlases` (layer × layer matrix with CIs and p-values).

See docs/compare.md for every definition, its source and the files it writes. Public names
load on first use (importing the package imports neither torch nor the measures).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neuronatlas._lazy import lazy_exports

# public name -> the module defining it; loaded on first use, so importing a submodule (the
# viewer's page, say) does not import torch
_EXPORTS = {
    "BootstrapResult": "._stats",
    "COMPARISONS": "._rsa",
    "CompareError": "._validate",
    "MEASURES": "._measures",
    "Measure": "._measures",
    "MinibatchCKA": "._cka",
    "POOLS": "._features",
    "PermutationResult": "._stats",
    "RDM_METRICS": "._rsa",
    "align_stimuli": "._compare",
    "bootstrap_ci": "._stats",
    "canonical_correlations": "._cca",
    "center_gram": "._cka",
    "cka": "._cka",
    "cka_grams": "._cka",
    "compare_atlases": "._compare",
    "compare_features": "._compare",
    "compare_rdms": "._rsa",
    "geodesic_transform": "._tda",
    "geotopological_transform": "._tda",
    "gram": "._cka",
    "hsic": "._cka",
    "load_comparison": "._compare",
    "noise_ceiling": "._rsa",
    "orthogonal_procrustes": "._shape",
    "partial_whiten": "._shape",
    "permutation_test": "._stats",
    "rank": "._rsa",
    "rdm": "._rsa",
    "rdm_crossnobis": "._rsa",
    "shape_distance": "._shape",
    "squareform": "._rsa",
    "stimulus_docs": "._features",
    "stimulus_features": "._features",
    "stochastic_shape_distance": "._shape",
    "svcca": "._cca",
    "svd_reduce": "._cca",
    "token_cka": "._tokens",
    "topological_rsa": "._tda",
}

if TYPE_CHECKING:
    from neuronatlas.compare._cca import canonical_correlations as canonical_correlations
    from neuronatlas.compare._cca import svcca as svcca
    from neuronatlas.compare._cca import svd_reduce as svd_reduce
    from neuronatlas.compare._cka import MinibatchCKA as MinibatchCKA
    from neuronatlas.compare._cka import center_gram as center_gram
    from neuronatlas.compare._cka import cka as cka
    from neuronatlas.compare._cka import cka_grams as cka_grams
    from neuronatlas.compare._cka import gram as gram
    from neuronatlas.compare._cka import hsic as hsic
    from neuronatlas.compare._compare import align_stimuli as align_stimuli
    from neuronatlas.compare._compare import compare_atlases as compare_atlases
    from neuronatlas.compare._compare import compare_features as compare_features
    from neuronatlas.compare._compare import load_comparison as load_comparison
    from neuronatlas.compare._features import POOLS as POOLS
    from neuronatlas.compare._features import stimulus_docs as stimulus_docs
    from neuronatlas.compare._features import stimulus_features as stimulus_features
    from neuronatlas.compare._measures import MEASURES as MEASURES
    from neuronatlas.compare._measures import Measure as Measure
    from neuronatlas.compare._rsa import COMPARISONS as COMPARISONS
    from neuronatlas.compare._rsa import RDM_METRICS as RDM_METRICS
    from neuronatlas.compare._rsa import compare_rdms as compare_rdms
    from neuronatlas.compare._rsa import noise_ceiling as noise_ceiling
    from neuronatlas.compare._rsa import rank as rank
    from neuronatlas.compare._rsa import rdm as rdm
    from neuronatlas.compare._rsa import rdm_crossnobis as rdm_crossnobis
    from neuronatlas.compare._rsa import squareform as squareform
    from neuronatlas.compare._shape import orthogonal_procrustes as orthogonal_procrustes
    from neuronatlas.compare._shape import partial_whiten as partial_whiten
    from neuronatlas.compare._shape import shape_distance as shape_distance
    from neuronatlas.compare._shape import stochastic_shape_distance as stochastic_shape_distance
    from neuronatlas.compare._stats import BootstrapResult as BootstrapResult
    from neuronatlas.compare._stats import PermutationResult as PermutationResult
    from neuronatlas.compare._stats import bootstrap_ci as bootstrap_ci
    from neuronatlas.compare._stats import permutation_test as permutation_test
    from neuronatlas.compare._tda import geodesic_transform as geodesic_transform
    from neuronatlas.compare._tda import geotopological_transform as geotopological_transform
    from neuronatlas.compare._tda import topological_rsa as topological_rsa
    from neuronatlas.compare._tokens import token_cka as token_cka
    from neuronatlas.compare._validate import CompareError as CompareError

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "COMPARISONS",
    "MEASURES",
    "POOLS",
    "RDM_METRICS",
    "BootstrapResult",
    "CompareError",
    "Measure",
    "MinibatchCKA",
    "PermutationResult",
    "align_stimuli",
    "bootstrap_ci",
    "canonical_correlations",
    "center_gram",
    "cka",
    "cka_grams",
    "compare_atlases",
    "compare_features",
    "compare_rdms",
    "geodesic_transform",
    "geotopological_transform",
    "gram",
    "hsic",
    "load_comparison",
    "noise_ceiling",
    "orthogonal_procrustes",
    "partial_whiten",
    "permutation_test",
    "rank",
    "rdm",
    "rdm_crossnobis",
    "shape_distance",
    "squareform",
    "stimulus_docs",
    "stimulus_features",
    "stochastic_shape_distance",
    "svcca",
    "svd_reduce",
    "token_cka",
    "topological_rsa",
]
