"""Concepts from recorded activations: probes, k-sparse probing, Net2Vec and ICE concept vectors.

- probes (:func:`probe`, :func:`probe_atlas`): logistic / ridge probes with cross-validated
  regularization, a control task and a shuffled-label baseline;
- k-sparse probing (:func:`sparse_probe`, :func:`sparse_probe_atlas`): accuracy vs the number of
  units, single-neuron candidates;
- Net2Vec (:func:`net2vec`, :func:`net2vec_atlas`): concept-to-unit weights, single unit vs
  combination;
- ICE (:func:`fit_concepts`, :func:`fidelity_table`, :func:`concept_maps`): NMF / PCA / k-means
  concept vectors of feature maps, the model's fidelity with rebuilt activations, heat-maps;
  :func:`concepts_atlas` fits NMF on an atlas's stored activations.

scikit-learn (the ``concepts`` extra) is imported only by the functions that need it.
The definitions are in docs/concepts.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neuronatlas._lazy import lazy_exports

_EXPORTS = {
    "concepts_atlas": "neuronatlas.concepts._atlas_nmf",
    "ConceptError": "neuronatlas.concepts._common",
    "concept_maps": "neuronatlas.concepts._ice",
    "fidelity": "neuronatlas.concepts._ice",
    "fidelity_table": "neuronatlas.concepts._ice",
    "fit_concepts": "neuronatlas.concepts._ice",
    "save_heatmaps": "neuronatlas.concepts._ice",
    "site_rows": "neuronatlas.concepts._ice",
    "LABELS": "neuronatlas.concepts._labels",
    "code_lines": "neuronatlas.concepts._labels",
    "sql_label": "neuronatlas.concepts._labels",
    "token_labels": "neuronatlas.concepts._labels",
    "LinearFit": "neuronatlas.concepts._linear",
    "Net2VecResult": "neuronatlas.concepts._net2vec",
    "net2vec": "neuronatlas.concepts._net2vec",
    "net2vec_atlas": "neuronatlas.concepts._net2vec",
    "set_iou": "neuronatlas.concepts._net2vec",
    "TorchNMF": "neuronatlas.concepts._nmf",
    "make_decomposition": "neuronatlas.concepts._nmf",
    "ProbeResult": "neuronatlas.concepts._probes",
    "control_labels": "neuronatlas.concepts._probes",
    "probe": "neuronatlas.concepts._probes",
    "probe_atlas": "neuronatlas.concepts._probes",
    "SparseProbeResult": "neuronatlas.concepts._sparse_probing",
    "rank_units": "neuronatlas.concepts._sparse_probing",
    "sparse_probe": "neuronatlas.concepts._sparse_probing",
    "sparse_probe_atlas": "neuronatlas.concepts._sparse_probing",
}

if TYPE_CHECKING:
    from neuronatlas.concepts._atlas_nmf import concepts_atlas as concepts_atlas
    from neuronatlas.concepts._common import ConceptError as ConceptError
    from neuronatlas.concepts._ice import concept_maps as concept_maps
    from neuronatlas.concepts._ice import fidelity as fidelity
    from neuronatlas.concepts._ice import fidelity_table as fidelity_table
    from neuronatlas.concepts._ice import fit_concepts as fit_concepts
    from neuronatlas.concepts._ice import save_heatmaps as save_heatmaps
    from neuronatlas.concepts._ice import site_rows as site_rows
    from neuronatlas.concepts._labels import LABELS as LABELS
    from neuronatlas.concepts._labels import code_lines as code_lines
    from neuronatlas.concepts._labels import sql_label as sql_label
    from neuronatlas.concepts._labels import token_labels as token_labels
    from neuronatlas.concepts._linear import LinearFit as LinearFit
    from neuronatlas.concepts._net2vec import Net2VecResult as Net2VecResult
    from neuronatlas.concepts._net2vec import net2vec as net2vec
    from neuronatlas.concepts._net2vec import net2vec_atlas as net2vec_atlas
    from neuronatlas.concepts._net2vec import set_iou as set_iou
    from neuronatlas.concepts._nmf import TorchNMF as TorchNMF
    from neuronatlas.concepts._nmf import make_decomposition as make_decomposition
    from neuronatlas.concepts._probes import ProbeResult as ProbeResult
    from neuronatlas.concepts._probes import control_labels as control_labels
    from neuronatlas.concepts._probes import probe as probe
    from neuronatlas.concepts._probes import probe_atlas as probe_atlas
    from neuronatlas.concepts._sparse_probing import SparseProbeResult as SparseProbeResult
    from neuronatlas.concepts._sparse_probing import rank_units as rank_units
    from neuronatlas.concepts._sparse_probing import sparse_probe as sparse_probe
    from neuronatlas.concepts._sparse_probing import sparse_probe_atlas as sparse_probe_atlas

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "LABELS",
    "ConceptError",
    "LinearFit",
    "Net2VecResult",
    "ProbeResult",
    "SparseProbeResult",
    "TorchNMF",
    "code_lines",
    "concept_maps",
    "concepts_atlas",
    "control_labels",
    "fidelity",
    "fidelity_table",
    "fit_concepts",
    "make_decomposition",
    "net2vec",
    "net2vec_atlas",
    "probe",
    "probe_atlas",
    "rank_units",
    "save_heatmaps",
    "set_iou",
    "site_rows",
    "sparse_probe",
    "sparse_probe_atlas",
    "sql_label",
    "token_labels",
]
