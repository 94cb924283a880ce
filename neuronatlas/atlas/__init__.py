"""The atlas: build it from a model and a corpus, open it, read its tables."""

from neuronatlas.atlas._atlas import Atlas as Atlas
from neuronatlas.atlas._atlas import UnitCard as UnitCard
from neuronatlas.atlas._atlas import open_atlas as open_atlas
from neuronatlas.atlas._build import Progress as Progress
from neuronatlas.atlas._build import build_atlas as build_atlas

__all__ = ["Atlas", "Progress", "UnitCard", "build_atlas", "open_atlas"]
