"""Brain data as units, and encoding / decoding models between model features and brains.

See docs/brain-data.md (recordings, loaders, brain atlases) and docs/encoding.md (ridge
encoding models, delays, banded ridge, noise ceilings, decoding) for every definition.

Names are imported on first use (PEP 562), so the viewer can load this package's page without
importing torch, pandas or himalaya.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neuronatlas._lazy import lazy_exports

if TYPE_CHECKING:
    from neuronatlas.brain._atlas import align_stimuli as align_stimuli
    from neuronatlas.brain._atlas import doc_texts as doc_texts
    from neuronatlas.brain._atlas import open_recording as open_recording
    from neuronatlas.brain._atlas import write_brain_atlas as write_brain_atlas
    from neuronatlas.brain._banded import BandedResult as BandedResult
    from neuronatlas.brain._banded import banded_ridge as banded_ridge
    from neuronatlas.brain._ceiling import noise_ceiling as noise_ceiling
    from neuronatlas.brain._ceiling import normalize_scores as normalize_scores
    from neuronatlas.brain._decode import DecodingResult as DecodingResult
    from neuronatlas.brain._decode import decode as decode
    from neuronatlas.brain._decode import identification_accuracy as identification_accuracy
    from neuronatlas.brain._delays import delay_features as delay_features
    from neuronatlas.brain._encode import EncodingResult as EncodingResult
    from neuronatlas.brain._encode import encode as encode
    from neuronatlas.brain._loaders import load_arrays as load_arrays
    from neuronatlas.brain._loaders import load_nifti as load_nifti
    from neuronatlas.brain._loaders import load_nwb as load_nwb
    from neuronatlas.brain._loaders import load_recording as load_recording
    from neuronatlas.brain._recording import Recording as Recording
    from neuronatlas.brain._recording import read_stimulus_table as read_stimulus_table
    from neuronatlas.brain._ridge import DEFAULT_ALPHAS as DEFAULT_ALPHAS
    from neuronatlas.brain._ridge import RidgeCVResult as RidgeCVResult
    from neuronatlas.brain._ridge import RidgeEncoder as RidgeEncoder
    from neuronatlas.brain._ridge import kfold_splits as kfold_splits
    from neuronatlas.brain._ridge import ridge_cv as ridge_cv
    from neuronatlas.brain._ridge import score_predictions as score_predictions

_WHERE = {
    "align_stimuli": "neuronatlas.brain._atlas",
    "doc_texts": "neuronatlas.brain._atlas",
    "open_recording": "neuronatlas.brain._atlas",
    "write_brain_atlas": "neuronatlas.brain._atlas",
    "BandedResult": "neuronatlas.brain._banded",
    "banded_ridge": "neuronatlas.brain._banded",
    "noise_ceiling": "neuronatlas.brain._ceiling",
    "normalize_scores": "neuronatlas.brain._ceiling",
    "DecodingResult": "neuronatlas.brain._decode",
    "decode": "neuronatlas.brain._decode",
    "identification_accuracy": "neuronatlas.brain._decode",
    "delay_features": "neuronatlas.brain._delays",
    "EncodingResult": "neuronatlas.brain._encode",
    "encode": "neuronatlas.brain._encode",
    "load_arrays": "neuronatlas.brain._loaders",
    "load_nifti": "neuronatlas.brain._loaders",
    "load_nwb": "neuronatlas.brain._loaders",
    "load_recording": "neuronatlas.brain._loaders",
    "Recording": "neuronatlas.brain._recording",
    "read_stimulus_table": "neuronatlas.brain._recording",
    "DEFAULT_ALPHAS": "neuronatlas.brain._ridge",
    "RidgeCVResult": "neuronatlas.brain._ridge",
    "RidgeEncoder": "neuronatlas.brain._ridge",
    "kfold_splits": "neuronatlas.brain._ridge",
    "ridge_cv": "neuronatlas.brain._ridge",
    "score_predictions": "neuronatlas.brain._ridge",
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
