"""The atlas: build it from a model and a corpus, open it, read its tables."""

from neuronatlas.atlas._analyses import add_analysis as add_analysis
from neuronatlas.atlas._analyses import analysis_dir as analysis_dir
from neuronatlas.atlas._analyses import get_analysis as get_analysis
from neuronatlas.atlas._analyses import list_analyses as list_analyses
from neuronatlas.atlas._atlas import Atlas as Atlas
from neuronatlas.atlas._atlas import UnitCard as UnitCard
from neuronatlas.atlas._atlas import open_atlas as open_atlas
from neuronatlas.atlas._build import Progress as Progress
from neuronatlas.atlas._build import build_atlas as build_atlas
from neuronatlas.atlas._derived import append_site_units as append_site_units
from neuronatlas.atlas._derived import remove_site_units as remove_site_units

__all__ = [
    "Atlas",
    "Progress",
    "UnitCard",
    "add_analysis",
    "analysis_dir",
    "append_site_units",
    "build_atlas",
    "get_analysis",
    "list_analyses",
    "open_atlas",
    "remove_site_units",
]
