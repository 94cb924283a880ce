"""The static export: the viewer's pages as files that open from ``file://`` without a server.

Every registered page is rendered by the same handler and template as in the server, with
:class:`Links` producing relative file paths. The layout of the export folder:

```
index.html                      overview
units.html                      unit table: filters, sorts and paginates in the browser
data/units-<site index>.js      the unit table, one shard per site, loaded on demand
unit/<index>-<site slug>/<unit>.html   one page per unit
static/                         the package's CSS and JS
```

Size: a unit page is ~35 kB with 20 exemplars (mostly the exemplars), so 10k units take
~350 MB; export part of a large atlas with ``sites``, or fewer exemplars with ``exemplars``.
"""

from __future__ import annotations

import fnmatch
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronatlas.errors import AtlasExistsError, closest
from neuronatlas.viewer._app import _registry, open_atlas_for
from neuronatlas.viewer._atlas import SiteInfo, ViewerAtlas
from neuronatlas.viewer._errors import BadRequestError
from neuronatlas.viewer._registry import PageContext, ViewerRegistry
from neuronatlas.viewer._render import STATIC, Links, make_environment, static_path

__all__ = ["ExportReport", "export_html"]

MARKER = ".neuronatlas-export"
UNIT_PAGE = "/unit/{site}/{unit}"


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_html` wrote."""

    path: Path
    n_pages: int
    n_bytes: int
    seconds: float
    sites: tuple[str, ...]


def _select_sites(atlas: ViewerAtlas, patterns: Sequence[str] | None) -> list[SiteInfo]:
    if not patterns:
        return list(atlas.sites)
    chosen = [s for s in atlas.sites if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]
    if not chosen:
        near = closest(patterns[0], [s.name for s in atlas.sites])
        raise BadRequestError(
            f"No site matches {', '.join(map(repr, patterns))}. "
            + (f"Closest: {', '.join(near)}. " if near else "")
            + "Patterns are globs over site names, e.g. 'encoder.layer.1.*'."
        )
    return chosen


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise AtlasExistsError(
                f"{out} exists and is not a folder; choose another --html folder."
            )
        entries = list(out.iterdir())
        if entries and not (out / MARKER).exists():
            raise AtlasExistsError(
                f"{out} is not empty and holds no previous export; choose an empty or new folder."
            )
        if entries and not overwrite:
            raise AtlasExistsError(
                f"{out} holds a previous export; pass overwrite=True (--force) to replace it."
            )
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("neuronatlas static export\n")


def export_html(
    atlas: str | Path | ViewerAtlas,
    out: str | Path,
    *,
    sites: Sequence[str] | None = None,
    registry: ViewerRegistry | None = None,
    overwrite: bool = False,
    exemplars: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Write the viewer as a static site to ``out``.

    Args:
        atlas: an atlas directory or an opened :class:`ViewerAtlas`.
        out: folder to write (created; must be empty, new, or a previous export).
        sites: glob patterns of the sites to export (all when None); the overview always
            covers the whole atlas.
        registry: pages to export (the default registry when None).
        overwrite: replace a previous export in ``out``.
        exemplars: exemplars shown per unit page (all the atlas has when None); they are most
            of a unit page's size.
        progress: called as ``progress(done, total)`` while unit pages are written.

    Returns:
        An :class:`ExportReport`. Open ``out/index.html`` in a browser.

    Raises:
        AtlasExistsError: ``out`` is not empty and not a previous export (or overwrite is off).
        BadRequestError: no site matches ``sites``.
    """
    t0 = time.perf_counter()
    if exemplars is not None and not 1 <= exemplars <= 1000:
        raise BadRequestError(f"exemplars must be in [1, 1000]; got {exemplars}.")
    unit_query = [("k", str(exemplars))] if exemplars is not None else []
    registry = _registry(registry)
    view = open_atlas_for(atlas, registry)
    chosen = _select_sites(view, sites)
    out = Path(out).expanduser().resolve()
    _prepare(out, overwrite)
    shutil.copytree(STATIC, out / "static", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    env = make_environment(registry)
    nav = registry.nav(view)
    exported = [s.name for s in chosen]
    n_pages = 0
    jobs: list[tuple[Any, list[dict[str, Any]]]] = []
    for page in registry.pages:
        if page.export is False or page.template is None or not page.is_available(view):
            continue
        if page.params:
            if not callable(page.export):
                continue
            jobs.append((page, list(page.export(view, chosen))))
        else:
            jobs.append((page, [{}]))
    total = sum(len(p) for _, p in jobs)

    done = 0
    for page, all_params in jobs:
        template = env.get_template(page.template)
        if page.assets is not None:
            page.assets(view, out, chosen)
        current_site = None
        preload = None
        try:
            for params in all_params:
                site = params.get("site")
                if site != current_site:
                    if preload is not None:
                        preload.__exit__(None, None, None)
                        preload = None
                    if site is not None:
                        preload = view.preload(site)
                        preload.__enter__()
                    current_site = site
                rel = static_path(page.path, params, view)
                links = Links(view, static=True, here=rel, exported_sites=exported)
                query = unit_query if page.path == UNIT_PAGE else []
                ctx = PageContext(view, dict(params), query, links, True, page, registry)
                data = page.handler(ctx)
                if isinstance(data, dict):
                    html = template.render(
                        atlas=view,
                        links=links,
                        page=page,
                        nav=nav,
                        static=True,
                        registry=registry,
                        **data,
                    )
                    target = out / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(html, encoding="utf-8")
                    n_pages += 1
                done += 1
                if progress is not None and (done % 64 == 0 or done == total):
                    progress(done, total)
        finally:
            if preload is not None:
                preload.__exit__(None, None, None)
    n_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return ExportReport(out, n_pages, n_bytes, time.perf_counter() - t0, tuple(exported))
