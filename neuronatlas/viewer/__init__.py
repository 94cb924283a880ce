"""The atlas viewer: a local web app and a static HTML export of an atlas.

``neuronatlas view ATLAS`` serves it on 127.0.0.1; ``neuronatlas export ATLAS --html DIR``
writes the same pages as files that open without a server. Pages, unit-page panels and
unit-table columns are registered in :data:`registry`; analyses add theirs with
:func:`register_page`, :func:`register_unit_panel`, :func:`register_column` and
:func:`register_unit_table` (see docs/viewer.md).

Examples:
    >>> import tempfile
    >>> from neuronatlas.viewer import export_html, write_synthetic_atlas
    >>> atlas = write_synthetic_atlas(tempfile.mkdtemp() + "/atlas", n_layers=2, n_units=8)
    >>> report = export_html(atlas, tempfile.mkdtemp() + "/site")
    >>> report.n_pages
    18
"""

from __future__ import annotations

from neuronatlas.viewer._app import create_app as create_app
from neuronatlas.viewer._app import serve as serve
from neuronatlas.viewer._app import serve_in_thread as serve_in_thread
from neuronatlas.viewer._atlas import ContextToken as ContextToken
from neuronatlas.viewer._atlas import Exemplar as Exemplar
from neuronatlas.viewer._atlas import SiteInfo as SiteInfo
from neuronatlas.viewer._atlas import UnitPage as UnitPage
from neuronatlas.viewer._atlas import ViewerAtlas as ViewerAtlas
from neuronatlas.viewer._errors import BadRequestError as BadRequestError
from neuronatlas.viewer._errors import NotFoundError as NotFoundError
from neuronatlas.viewer._errors import RegistryError as RegistryError
from neuronatlas.viewer._errors import ViewerError as ViewerError
from neuronatlas.viewer._export import ExportReport as ExportReport
from neuronatlas.viewer._export import export_html as export_html
from neuronatlas.viewer._pages import register_builtins as _register_builtins
from neuronatlas.viewer._query import UnitQuery as UnitQuery
from neuronatlas.viewer._registry import Page as Page
from neuronatlas.viewer._registry import PageContext as PageContext
from neuronatlas.viewer._registry import UnitColumn as UnitColumn
from neuronatlas.viewer._registry import UnitContext as UnitContext
from neuronatlas.viewer._registry import UnitPanel as UnitPanel
from neuronatlas.viewer._registry import UnitTable as UnitTable
from neuronatlas.viewer._registry import ViewerRegistry as ViewerRegistry
from neuronatlas.viewer._registry import register_column as register_column
from neuronatlas.viewer._registry import register_page as register_page
from neuronatlas.viewer._registry import register_unit_panel as register_unit_panel
from neuronatlas.viewer._registry import register_unit_table as register_unit_table
from neuronatlas.viewer._registry import registry as registry
from neuronatlas.viewer._render import Links as Links
from neuronatlas.viewer._synthetic import write_synthetic_atlas as write_synthetic_atlas

_register_builtins(registry)

# Analyses register their pages and panels in ``neuronatlas.<analysis>._pages``; a page shows
# only for atlases holding that analysis's results (``Page.available``).
_ANALYSIS_PAGES = ("sae", "concepts", "heads", "steer", "compare", "brain")


def _register_analyses() -> None:
    import importlib
    import importlib.util

    for name in _ANALYSIS_PAGES:
        module = f"neuronatlas.{name}._pages"
        if importlib.util.find_spec(f"neuronatlas.{name}") is None:
            continue
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


_register_analyses()
