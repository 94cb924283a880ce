"""Models to map: the packaged MiniLM, local Hugging Face folders, cached Hub ids, factories.

See ``docs/data.md`` ("Models").
"""

from __future__ import annotations

from neuronatlas.models._load import LoadedModel as LoadedModel
from neuronatlas.models._load import ModelInfo as ModelInfo
from neuronatlas.models._load import load_model as load_model
from neuronatlas.models._load import weights_sha256 as weights_sha256

__all__ = ["LoadedModel", "ModelInfo", "load_model", "weights_sha256"]
