"""Rendering shared by the server and the static export: URLs, the Jinja environment, shading.

URLs are built by :class:`Links`, never by templates: in the server a unit is
``/unit/<site>/<unit>`` with the site name percent-encoded as one path segment (site names hold
dots and colons; a colon left bare in a relative URL would read as a scheme); in the static
export it is a relative path to ``unit/<index>-<slug>/<unit>.html``.

Examples:
    >>> shade_class(0.5, 1.0), shade_class(-1.0, 1.0), shade_class(None, 1.0)
    ('p6', 'n12', 'na')
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from neuronatlas._lazy import require

jinja2 = require("jinja2")  # the viewer extra; a missing one names the install line

from markupsafe import Markup, escape  # noqa: E402  (installed with jinja2)

from neuronatlas.viewer._columns import ColumnInfo, fmt_value  # noqa: E402

if TYPE_CHECKING:
    from neuronatlas.viewer._atlas import Exemplar, ViewerAtlas
    from neuronatlas.viewer._registry import ViewerRegistry

__all__ = ["Links", "make_environment", "render_context", "shade_class", "static_path"]

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
#: shading levels per sign; ``static/app.css`` defines ``.p1``-``.p12`` and ``.n1``-``.n12``
LEVELS = 12
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def shade_class(act: float | None, scale: float) -> str:
    """CSS class shading a token by ``act / scale``: ``p1``-``p12`` (positive), ``n1``-``n12``.

    Returns ``""`` for activations that round to no shade and ``"na"`` where the activation was
    not recorded (NaN / None).
    """
    if act is None or not math.isfinite(act):
        return "na"
    if scale <= 0 or not math.isfinite(scale):
        return ""
    level = min(LEVELS, round(abs(act) / scale * LEVELS))
    if level == 0:
        return ""
    return f"{'p' if act > 0 else 'n'}{level}"


def render_context(ex: Exemplar, scale: float) -> Markup:
    """The context tokens of one exemplar as shaded spans; the activation is the hover title.

    Token text is escaped here (it is corpus text, untrusted); attributes hold only numbers and
    class names. Markup is kept terse (it is most of a unit page): ``<span class="p7"
    title="0.532">text</span>``; the container's ``data-start`` gives the first position, so
    the page script can tell the position of any token.
    """
    parts = []
    for t in ex.context:
        cls = shade_class(t.act, scale)
        if t.focus:
            cls += " focus"
        if t.special:
            cls += " sp"
        cls = cls.strip()
        value = "not recorded" if t.act is None else fmt_value(t.act, "float")
        attr = f' class="{cls}"' if cls else ""
        parts.append(
            f'<span{attr} title="{escape(value)}">{escape(t.text) if t.text else "&#8203;"}</span>'
        )
    return Markup("".join(parts))


def site_slug(index: int, name: str) -> str:
    """File-system-safe folder name of a site in the static export."""
    return f"{index}-{_SAFE.sub('_', name).strip('_')[:80] or 'site'}"


def static_path(path: str, params: Mapping[str, Any], atlas: ViewerAtlas) -> str:
    """Output file (relative to the export folder) of page ``path`` with ``params``."""
    if path == "/":
        return "index.html"
    parts = []
    for seg in path.strip("/").split("/"):
        if seg.startswith("{"):
            name = seg[1:-1]
            value = params[name]
            if name == "site":
                parts.append(site_slug(atlas.site(value).index, value))
            else:
                parts.append(_SAFE.sub("_", str(value)) or "_")
        else:
            parts.append(seg)
    return "/".join(parts) + ".html"


class Links:
    """URLs of pages, units and assets, for the server or for one file of the static export.

    Args:
        atlas: the atlas (site indices for static paths).
        static: build relative file paths for the static export.
        here: in static mode, the path of the file being rendered (relative to the export root).
        root: in server mode, the app's root path (behind a proxy).
        exported_sites: in static mode, the sites whose unit pages exist (others: no link).
    """

    def __init__(
        self,
        atlas: ViewerAtlas,
        *,
        static: bool = False,
        here: str = "index.html",
        root: str = "",
        exported_sites: Iterable[str] | None = None,
    ) -> None:
        self.atlas = atlas
        self.static = static
        self.here = here
        self.root = root.rstrip("/")
        self.exported = set(exported_sites) if exported_sites is not None else None

    def _rel(self, target: str) -> str:
        base = posixpath.dirname(self.here)
        return posixpath.relpath(target, base or ".")

    def page(
        self,
        path: str,
        query: Sequence[tuple[str, str]] | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> str:
        """URL of page ``path`` (a registered path template) with path ``params`` and ``query``.

        In the static export the query goes into the fragment (``units.html#site=...``), which
        the page's script reads; pages without parameters ignore it.
        """
        items = list(query.items()) if isinstance(query, Mapping) else list(query or ())
        qs = urlencode(items, doseq=True)
        if self.static:
            return self._rel(static_path(path, params, self.atlas)) + (f"#{qs}" if qs else "")
        url = "/".join(
            quote(str(params[seg[1:-1]]), safe="") if seg.startswith("{") else seg
            for seg in path.split("/")
        )
        return self.root + (url or "/") + (f"?{qs}" if qs else "")

    def unit(self, site: str, unit: int) -> str | None:
        """URL of a unit page; None in a static export that left the site out."""
        if self.exported is not None and site not in self.exported:
            return None
        return self.page("/unit/{site}/{unit}", site=site, unit=unit)

    def units(self, query: Sequence[tuple[str, str]] | Mapping[str, Any] | None = None) -> str:
        """URL of the unit table with filters ``query`` (see :class:`UnitQuery`)."""
        return self.page("/units", query)

    def asset(self, name: str) -> str:
        """URL of a file of the package's ``static/`` folder."""
        if self.static:
            return self._rel(f"static/{name}")
        return f"{self.root}/static/{quote(name)}"


def _num(value: Any, kind: str | None = None) -> str:
    if kind is None:
        kind = (
            "bool"
            if isinstance(value, bool)
            else "int"
            if isinstance(value, int)
            else "float"
            if isinstance(value, float)
            else "str"
        )
    return fmt_value(value, kind)


def _cell(row: Mapping[str, Any], col: ColumnInfo) -> str:
    return fmt_value(row.get(col.name), col.kind)


def make_environment(registry: ViewerRegistry) -> jinja2.Environment:
    """The Jinja environment: built-in templates, then the registered template folders.

    Autoescaping is on for every template; nothing renders corpus text without escaping it.
    """
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(TEMPLATES))]
    loaders += [jinja2.FileSystemLoader(str(d)) for d in registry.template_dirs()]
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.globals["cell"] = _cell
    env.globals["render_context"] = render_context
    env.globals["shade_class"] = shade_class
    return env
