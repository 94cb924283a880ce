"""The viewer's registration points: pages, unit-page panels, unit-table columns and tables.

Every page of the viewer, the built-in ones included, is registered here; the server and the
static export are generated from the registry. A later analysis (SAE features, attention
heads, concept vectors, comparisons) adds what it shows by registering it, without editing any
existing page:

.. code-block:: python

    from neuronatlas.viewer import register_column, register_page, register_unit_panel

    @register_page("/heads", title="Heads", template="heads.html", templates="path/to/templates")
    def heads_page(ctx):                        # ctx: PageContext
        rows = ctx.atlas.sql("SELECT * FROM read_parquet(?)", [str(ctx.atlas.path / "heads.parquet")])
        return {"rows": rows}                    # template context

    @register_unit_panel("sae", title="SAE features", template="sae_panel.html", order=40)
    def sae_panel(ctx):                          # ctx: UnitContext; return None to hide the panel
        return {"features": ...}

    register_column("abs_max", sql='greatest(abs("min"), abs("max"))', requires=("min", "max"))

Registries refuse duplicate keys and list the known keys when a lookup fails.

Examples:
    >>> reg = ViewerRegistry()
    >>> _ = reg.column("abs_max", sql='greatest(abs("min"), abs("max"))', requires=("min", "max"))
    >>> reg.columns.keys()
    ['abs_max']
    >>> reg.column("abs_max", sql="1")
    Traceback (most recent call last):
    ...
    neuronatlas.viewer._errors.RegistryError: A unit-table column named 'abs_max' is already registered. Pick another name, or unregister the existing one first. Known: abs_max.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from neuronatlas.errors import closest
from neuronatlas.viewer._errors import BadRequestError, RegistryError

if TYPE_CHECKING:
    from neuronatlas.viewer._atlas import SiteInfo, ViewerAtlas
    from neuronatlas.viewer._render import Links

__all__ = [
    "Page",
    "PageContext",
    "Registry",
    "UnitColumn",
    "UnitContext",
    "UnitPanel",
    "UnitTable",
    "ViewerRegistry",
    "register_column",
    "register_page",
    "register_unit_panel",
    "register_unit_table",
    "registry",
]

T = TypeVar("T")
_PATH = re.compile(r"^/([A-Za-z0-9._-]+|\{[a-z_]+\})?(/([A-Za-z0-9._-]+|\{[a-z_]+\}))*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Registry(Generic[T]):
    """Named items of one kind, in registration order; refuses duplicates."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, key: str, item: T) -> T:
        if key in self._items:
            raise RegistryError(
                f"A {self.kind} named {key!r} is already registered. Pick another name, or "
                f"unregister the existing one first. Known: {', '.join(self._items)}."
            )
        self._items[key] = item
        return item

    def remove(self, key: str) -> T:
        self[key]
        return self._items.pop(key)

    def __getitem__(self, key: str) -> T:
        try:
            return self._items[key]
        except KeyError:
            near = closest(key, self._items)
            raise RegistryError(
                f"No {self.kind} named {key!r}."
                + (f" Did you mean {near[0]!r}?" if near else "")
                + f" Known: {', '.join(self._items) or 'none'}."
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        return list(self._items)

    def copy(self) -> Registry[T]:
        new: Registry[T] = Registry(self.kind)
        new._items = dict(self._items)
        return new


@dataclass(frozen=True)
class Page:
    """A page of the viewer.

    Attributes:
        path: URL path, with ``{name}`` parameters as whole segments, e.g. ``/unit/{site}/{unit}``.
            ``{site}`` must be a site of the atlas and ``{unit}`` a unit of it (else 404).
        title: shown in the navigation bar and the window title.
        handler: ``handler(ctx: PageContext) -> dict`` (the template's context) or a Starlette
            ``Response`` (served as is; not exported).
        template: Jinja template rendering the page; it should extend ``base.html``.
        nav: list the page in the navigation bar (pages with parameters never are).
        order: position in the navigation bar (smaller first).
        export: write the page in the static export. For a path with parameters, a callable
            ``export(atlas, sites) -> iterable of parameter dicts`` (grouped by site).
        assets: ``assets(atlas, out_dir, sites)`` writes extra files of the static export (data).
        templates: a folder of the page's templates, searched after the built-in ones.
        available: ``available(atlas) -> bool``; a page whose data the atlas lacks (an analysis
            that was never run on it) is left out of the navigation bar, the routes and the
            export. ``None``: always available.
    """

    path: str
    title: str
    handler: Callable[[PageContext], Any]
    template: str | None = None
    nav: bool = True
    order: int = 100
    export: bool | Callable[[ViewerAtlas, Sequence[SiteInfo]], Iterable[Mapping[str, Any]]] = True
    assets: Callable[[ViewerAtlas, Path, Sequence[SiteInfo]], None] | None = None
    templates: str | Path | None = None
    available: Callable[[ViewerAtlas], bool] | None = None

    def is_available(self, atlas: ViewerAtlas) -> bool:
        return self.available is None or bool(self.available(atlas))

    @property
    def params(self) -> list[str]:
        return re.findall(r"\{([a-z_]+)\}", self.path)


@dataclass(frozen=True)
class UnitPanel:
    """A panel of the unit page.

    Attributes:
        name: key; also the panel's HTML id (``panel-<name>``).
        title: panel heading.
        handler: ``handler(ctx: UnitContext) -> dict | None``; None hides the panel for that unit
            (e.g. an SAE panel on a site without an SAE).
        template: Jinja template of the panel's body; it sees ``ctx`` and the handler's dict as ``p``.
        order: position on the page (built-ins: statistics 10, distribution 20, exemplars 30).
        wide: span the full width of the page (else half, beside the next panel).
        templates: a folder of the panel's templates.
    """

    name: str
    title: str
    handler: Callable[[UnitContext], Mapping[str, Any] | None]
    template: str
    order: int = 100
    wide: bool = False
    templates: str | Path | None = None


@dataclass(frozen=True)
class UnitColumn:
    """A computed column of the unit table: filterable and sortable like any other.

    Attributes:
        name: column name (an identifier).
        sql: DuckDB expression over ``units.parquet`` columns (computed once, at load).
        requires: columns the expression needs; without them the column is left out.
        title: header text; ``description``: header tooltip.
        default: show it in the unit table by default.
    """

    name: str
    sql: str
    requires: tuple[str, ...] = ()
    title: str = ""
    description: str = ""
    default: bool = False


@dataclass(frozen=True)
class UnitTable:
    """A Parquet file of the atlas keyed by ``(site, unit)`` whose columns join the unit table."""

    name: str
    filename: str


@dataclass
class PageContext:
    """What a page handler gets.

    Attributes:
        atlas: the atlas (tables through :meth:`ViewerAtlas.sql`, sites, columns).
        params: validated path parameters (``site`` a str, ``unit`` an int, others str).
        query: the raw URL query items (empty in the static export).
        links: URL builder that works in the server and in the static export.
        static: True while exporting the static site.
        page: the page being rendered; ``registry``: the registry the app was built from.
    """

    atlas: ViewerAtlas
    params: dict[str, Any]
    query: list[tuple[str, str]]
    links: Links
    static: bool
    page: Page
    registry: ViewerRegistry

    def only(self, *allowed: str) -> None:
        """Reject query parameters other than ``allowed`` (HTTP 400)."""
        for key, _ in self.query:
            if key not in allowed:
                raise BadRequestError(
                    f"Unknown parameter {key!r} for {self.page.path}. "
                    f"Expected: {', '.join(allowed) or 'none'}."
                )

    def arg_int(self, name: str, default: int, lo: int, hi: int) -> int:
        """An integer query parameter in ``[lo, hi]`` (HTTP 400 otherwise)."""
        values = [v for k, v in self.query if k == name]
        if not values:
            return default
        if len(values) > 1:
            raise BadRequestError(
                f"Parameter {name!r} was given {len(values)} times; give it once."
            )
        try:
            value = int(values[0])
        except ValueError:
            raise BadRequestError(
                f"Parameter {name!r} must be an integer; got {values[0][:40]!r}."
            ) from None
        if not lo <= value <= hi:
            raise BadRequestError(f"Parameter {name!r} must be in [{lo}, {hi}]; got {value}.")
        return value

    def arg_choice(self, name: str, choices: Sequence[str], default: str) -> str:
        """A query parameter that must be one of ``choices`` (HTTP 400 otherwise)."""
        values = [v for k, v in self.query if k == name]
        if not values:
            return default
        if len(values) > 1 or values[0] not in choices:
            raise BadRequestError(
                f"Parameter {name!r} must be one of {', '.join(choices)}; got {values[-1][:40]!r}."
            )
        return values[0]


@dataclass
class UnitContext:
    """What a unit-page panel handler gets."""

    atlas: ViewerAtlas
    site: SiteInfo
    unit: int
    row: dict[str, Any]
    links: Links
    static: bool
    options: dict[str, Any] = field(default_factory=dict)


class ViewerRegistry:
    """Pages, unit panels, unit-table columns and tables of one viewer.

    :data:`registry` is the default one (holding the built-in pages); build an app from a
    :meth:`copy` to add pages for one app only (tests do).
    """

    def __init__(self) -> None:
        self.pages: Registry[Page] = Registry("page")
        self.panels: Registry[UnitPanel] = Registry("unit panel")
        self.columns: Registry[UnitColumn] = Registry("unit-table column")
        self.tables: Registry[UnitTable] = Registry("unit table")

    def copy(self) -> ViewerRegistry:
        new = ViewerRegistry()
        new.pages, new.panels = self.pages.copy(), self.panels.copy()
        new.columns, new.tables = self.columns.copy(), self.tables.copy()
        return new

    def add_page(self, page: Page) -> Page:
        if not _PATH.match(page.path) or any(
            seg.strip(".") == "" for seg in page.path.split("/")[1:] if seg
        ):
            raise RegistryError(
                f"A page path is '/' followed by segments of letters, digits, '._-' or "
                f"'{{param}}' (e.g. '/unit/{{site}}/{{unit}}'); got {page.path!r}."
            )
        return self.pages.add(page.path, page)

    def page(
        self,
        path: str,
        *,
        title: str,
        template: str | None = None,
        nav: bool = True,
        order: int = 100,
        export: bool | Callable[..., Iterable[Mapping[str, Any]]] = True,
        assets: Callable[..., None] | None = None,
        templates: str | Path | None = None,
        available: Callable[[ViewerAtlas], bool] | None = None,
    ) -> Callable[[Callable[[PageContext], Any]], Callable[[PageContext], Any]]:
        """Decorator: register ``handler`` as the page at ``path`` (see :class:`Page`)."""

        def decorate(handler: Callable[[PageContext], Any]) -> Callable[[PageContext], Any]:
            self.add_page(Page(path, title, handler, template, nav and "{" not in path, order,
                               export, assets, templates, available))  # fmt: skip
            return handler

        return decorate

    def unit_panel(
        self,
        name: str,
        *,
        title: str,
        template: str,
        order: int = 100,
        wide: bool = False,
        templates: str | Path | None = None,
    ) -> Callable[[Callable[[UnitContext], Any]], Callable[[UnitContext], Any]]:
        """Decorator: register ``handler`` as a unit-page panel (see :class:`UnitPanel`)."""
        if not _NAME.match(name):
            raise RegistryError(
                f"A panel name is an identifier (letters, digits, _); got {name!r}."
            )

        def decorate(handler: Callable[[UnitContext], Any]) -> Callable[[UnitContext], Any]:
            self.panels.add(name, UnitPanel(name, title, handler, template, order, wide, templates))
            return handler

        return decorate

    def column(
        self,
        name: str,
        *,
        sql: str,
        requires: Sequence[str] = (),
        title: str = "",
        description: str = "",
        default: bool = False,
    ) -> UnitColumn:
        """Register a computed unit-table column (see :class:`UnitColumn`)."""
        if not _NAME.match(name):
            raise RegistryError(
                f"A column name is an identifier (letters, digits, _); got {name!r}."
            )
        return self.columns.add(
            name, UnitColumn(name, sql, tuple(requires), title, description, default)
        )

    def unit_table(self, name: str, filename: str) -> UnitTable:
        """Register a ``(site, unit)``-keyed Parquet file of the atlas to join the unit table."""
        if (
            "/" in filename
            or "\\" in filename
            or filename.startswith(".")
            or not filename.endswith(".parquet")
        ):
            raise RegistryError(
                f"A unit table is a '.parquet' file name inside the atlas folder; got {filename!r}."
            )
        return self.tables.add(name, UnitTable(name, filename))

    def template_dirs(self) -> list[Path]:
        dirs = [Path(p.templates) for p in self.pages if p.templates]
        dirs += [Path(p.templates) for p in self.panels if p.templates]
        return list(dict.fromkeys(dirs))

    def nav(self, atlas: ViewerAtlas | None = None) -> list[Page]:
        """Pages of the navigation bar, in order; with ``atlas``, only those it has data for."""
        pages = (p for p in self.pages if p.nav and (atlas is None or p.is_available(atlas)))
        return sorted(pages, key=lambda p: p.order)

    def ordered_panels(self) -> list[UnitPanel]:
        return sorted(self.panels, key=lambda p: p.order)


#: The default registry: the built-in pages and whatever extensions register.
registry = ViewerRegistry()
register_page = registry.page
register_unit_panel = registry.unit_panel
register_column = registry.column
register_unit_table = registry.unit_table
