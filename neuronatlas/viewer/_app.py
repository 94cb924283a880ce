"""The web app: pages from the registry, a small JSON API, static files; read-only.

Security model (see docs/viewer.md):

- read-only: any method but GET and HEAD is answered 405 before reaching a route;
- bound to 127.0.0.1 by default, and the ``Host`` header must name the address served
  (a page on another site cannot reach the viewer through DNS rebinding);
- corpus text is untrusted: templates autoescape, scripts only set ``textContent``, and a
  Content-Security-Policy allows scripts and styles from the app itself only (no inline script);
- static files come only from the package's ``static/`` folder; sites must be sites of the
  atlas and units integers in range (else 404 with a message); every query parameter is
  validated (else 400/422 with a message); SQL is parameterized, column names come from the
  table's schema.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from neuronatlas._lazy import require
from neuronatlas.viewer._atlas import ViewerAtlas
from neuronatlas.viewer._errors import NotFoundError, ViewerError
from neuronatlas.viewer._query import UnitQuery
from neuronatlas.viewer._registry import Page, PageContext, ViewerRegistry
from neuronatlas.viewer._registry import registry as default_registry
from neuronatlas.viewer._render import STATIC, Links, make_environment

__all__ = ["create_app", "open_atlas_for", "serve", "serve_in_thread"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_UNIT = re.compile(r"^[0-9]{1,9}$")
_REASONS = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    422: "Invalid parameter",
    500: "Server error",
}


def _registry(registry: ViewerRegistry | None) -> ViewerRegistry:
    return registry if registry is not None else default_registry


def open_atlas_for(atlas: str | Path | ViewerAtlas, registry: ViewerRegistry) -> ViewerAtlas:
    """Open ``atlas`` with the registry's columns and unit tables (pass a ViewerAtlas through)."""
    if isinstance(atlas, ViewerAtlas):
        return atlas
    return ViewerAtlas(atlas, columns=list(registry.columns), unit_tables=list(registry.tables))


class _Guard:
    """ASGI middleware: GET/HEAD only, Host check, security headers on every response."""

    def __init__(self, app: Any, allowed_hosts: Sequence[str] | None) -> None:
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        if scope["method"] not in ("GET", "HEAD"):
            await _plain(send_with_headers, 405, "The atlas viewer is read-only: only GET and HEAD are served.",
                         [(b"allow", b"GET, HEAD")])  # fmt: skip
            return
        if self.allowed is not None:
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
            name = (
                host[1:].split("]")[0]
                if host.startswith("[")
                else host.rsplit(":", 1)[0]
                if host.count(":") == 1
                else host
            )
            if name not in self.allowed:
                await _plain(
                    send_with_headers,
                    400,
                    f"Unexpected Host header {host!r}; this viewer serves {', '.join(sorted(self.allowed))}.",
                )
                return
        await self.app(scope, receive, send_with_headers)


async def _plain(
    send: Any, status: int, text: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = text.encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()), *headers],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def create_app(
    atlas: str | Path | ViewerAtlas,
    *,
    registry: ViewerRegistry | None = None,
    allowed_hosts: Sequence[str] | None = LOCAL_HOSTS,
) -> Any:
    """Build the viewer's ASGI app (FastAPI) for one atlas.

    Args:
        atlas: an atlas directory, or an opened :class:`ViewerAtlas`.
        registry: pages, panels and columns to serve; the default registry (built-in pages plus
            registered extensions) when None.
        allowed_hosts: host names the ``Host`` header may carry (DNS-rebinding protection);
            None accepts any (only when binding a public address on purpose).

    Returns:
        The app; serve it with uvicorn, or use :func:`serve`.

    Examples:
        >>> import tempfile
        >>> from starlette.testclient import TestClient
        >>> from neuronatlas.viewer import write_synthetic_atlas
        >>> app = create_app(write_synthetic_atlas(tempfile.mkdtemp() + "/a", n_units=8))
        >>> with TestClient(app, base_url="http://127.0.0.1") as client:
        ...     client.get("/units", params={"sort": "max", "order": "desc"}).status_code
        200
    """
    fastapi = require("fastapi")
    require("jinja2")
    from fastapi import Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.routing import Route
    from starlette.staticfiles import StaticFiles

    registry = _registry(registry)
    view = open_atlas_for(atlas, registry)
    env = make_environment(registry)
    nav = registry.nav(view)
    error_page = Page("/__error__", "Error", lambda ctx: {}, "error.html", nav=False)

    def render(page: Page, links: Links, data: dict[str, Any], status: int = 200) -> Any:
        html = env.get_template(page.template or "error.html").render(
            atlas=view, links=links, page=page, nav=nav, static=False, registry=registry, **data
        )
        return HTMLResponse(html, status_code=status, headers={"cache-control": "no-cache"})

    def error_response(request: Any, status: int, message: str) -> Any:
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {"error": _REASONS.get(status, "Error"), "detail": message}, status_code=status
            )
        links = Links(view, root=request.scope.get("root_path", ""))
        data = {"status": status, "reason": _REASONS.get(status, "Error"), "message": message}
        return render(error_page, links, data, status)

    def check_path(page: Page, params: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = dict(params)
        if "site" in params:
            view.site(params["site"])
        if "unit" in params:
            text = params["unit"]
            if not _UNIT.match(text):
                raise NotFoundError(f"A unit is a non-negative integer; got {text[:40]!r}.")
            out["unit"] = int(text)
            if "site" in params:
                view.check_unit(params["site"], out["unit"])
        return out

    def page_endpoint(page: Page) -> Any:
        def endpoint(request: Any) -> Any:
            params = check_path(page, dict(request.path_params))
            links = Links(view, root=request.scope.get("root_path", ""))
            ctx = PageContext(
                view, params, list(request.query_params.multi_items()), links, False, page, registry
            )
            result = page.handler(ctx)
            if not isinstance(result, dict):
                return result  # a Response
            return render(page, links, result)

        return endpoint

    app = fastapi.FastAPI(
        title="neuronatlas viewer", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.atlas = view
    app.state.registry = registry

    @app.exception_handler(ViewerError)
    async def viewer_error(request: Request, exc: ViewerError) -> Any:
        return error_response(request, exc.status_code, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        message = (
            exc.detail
            if exc.status_code != 404
            else f"No page at {request.url.path!r}. Pages: "
            + ", ".join(p.path for p in registry.pages if p.is_available(view))
        )
        return error_response(request, exc.status_code, str(message))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Any:
        parts = [
            f"{'.'.join(str(x) for x in e.get('loc', ())[1:])}: {e.get('msg')}"
            for e in exc.errors()
        ]
        return error_response(request, 422, "Invalid parameter — " + "; ".join(parts))

    def api_sites(request: Any) -> Any:
        return JSONResponse(
            [
                {
                    "name": s.name,
                    "index": s.index,
                    "layer": s.layer,
                    "kind": s.kind,
                    "n_units": s.n_units,
                }
                for s in view.sites
            ]
        )

    def api_units(request: Any) -> Any:
        query = UnitQuery.from_params(
            request.query_params.multi_items(),
            columns=view.columns,
            sites=[s.name for s in view.sites],
        )
        page = view.query_units(query)
        return JSONResponse(_json_safe({
            "total": page.total, "page": query.page, "per_page": query.per_page, "n_pages": page.n_pages,
            "columns": [c.name for c in page.columns], "rows": page.rows,
        }))  # fmt: skip

    @app.api_route("/api/unit/{site:path}/{unit}", methods=["GET", "HEAD"])
    def api_unit(site: str, unit: str, k: int = Query(20, ge=1, le=1000)) -> Any:
        params = check_path(error_page, {"site": site, "unit": unit})
        row = view.unit_row(site, params["unit"])
        exemplars = [
            {
                "rank": e.rank, "activation": e.activation, "doc": e.doc, "pos": e.pos, "token": e.token,
                "source": e.source, "context": [{"pos": t.pos, "token": t.raw, "text": t.text, "act": t.act} for t in e.context],
            }
            for e in view.exemplars(site, params["unit"], limit=k)
        ]  # fmt: skip
        return JSONResponse(_json_safe({"unit": row, "exemplars": exemplars}))

    app.router.routes.append(Route("/api/sites", api_sites, methods=["GET"]))
    app.router.routes.append(Route("/api/units", api_units, methods=["GET"]))
    for page in registry.pages:
        if not page.is_available(view):
            continue
        path = (
            "/".join("{site:path}" if seg == "{site}" else seg for seg in page.path.split("/"))
            or "/"
        )
        app.router.routes.append(Route(path, page_endpoint(page), methods=["GET"], name=page.path))
    app.mount("/static", StaticFiles(directory=str(STATIC), follow_symlink=False), name="static")
    return _Guard(app, allowed_hosts)


def _hosts_for(host: str) -> Sequence[str] | None:
    if host in ("0.0.0.0", "::", ""):
        return None
    return tuple(dict.fromkeys([host, *LOCAL_HOSTS]))


def serve(
    atlas: str | Path | ViewerAtlas,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    registry: ViewerRegistry | None = None,
    log_level: str = "warning",
) -> None:
    """Serve the viewer until interrupted (Ctrl-C). Binds 127.0.0.1 unless told otherwise."""
    uvicorn = require("uvicorn")
    app = create_app(atlas, registry=registry, allowed_hosts=_hosts_for(host))
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=False, server_header=False
    )


@contextmanager
def serve_in_thread(
    atlas: str | Path | ViewerAtlas,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    registry: ViewerRegistry | None = None,
    timeout: float = 20.0,
) -> Iterator[str]:
    """Serve the viewer from a background thread for the duration of a ``with`` block.

    Yields the base URL (port 0 picks a free port). For notebooks, tests and scripts.

    Examples:
        >>> import tempfile, urllib.request
        >>> from neuronatlas.viewer import write_synthetic_atlas
        >>> with serve_in_thread(write_synthetic_atlas(tempfile.mkdtemp() + "/a", n_units=8)) as url:
        ...     urllib.request.urlopen(url + "/units").status
        200
    """
    uvicorn = require("uvicorn")
    app = create_app(atlas, registry=registry, allowed_hosts=_hosts_for(host))
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="neuronatlas-viewer", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ViewerError(f"The viewer did not start on {host}:{port} within {timeout:.0f} s.")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
