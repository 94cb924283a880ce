"""``neuronatlas view`` and ``neuronatlas export``: browse an atlas, or write it as a static site.

The viewer (FastAPI, uvicorn, Jinja2) is imported only when a verb runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from neuronatlas.cli._app import command, console


@command("view", help="Browse an atlas in your web browser (served on 127.0.0.1).")
def view(
    atlas: Annotated[Path, typer.Argument(help="Atlas directory (holds atlas.json).")],
    host: Annotated[
        str,
        typer.Option(
            help="Address to bind. Anything but 127.0.0.1 exposes the atlas to your network."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on (0 picks a free one).")
    ] = 8000,
) -> None:
    import socket

    from neuronatlas._lazy import require

    require("fastapi")
    uvicorn = require("uvicorn")
    from neuronatlas.viewer import ViewerAtlas, ViewerError, create_app, registry
    from neuronatlas.viewer._app import _hosts_for

    opened = ViewerAtlas(atlas, columns=list(registry.columns), unit_tables=list(registry.tables))
    app = create_app(opened, allowed_hosts=_hosts_for(host))
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections queue from now on, before the app is up
    except OSError as exc:
        raise ViewerError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Pick another --port (0 picks a free one)."
        ) from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"Serving [bold]{opened.title}[/] ({opened.n_units:,} units, {len(opened.sites)} sites) at "
        f"[link]http://{shown}:{bound}/[/link]  (Ctrl-C stops)",
        highlight=False,
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(
            f"[yellow]warning:[/] bound to {host}: anyone who can reach it can read the atlas."
        )
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


@command("export", help="Write an atlas as a static web site that opens without a server.")
def export(
    atlas: Annotated[Path, typer.Argument(help="Atlas directory (holds atlas.json).")],
    html: Annotated[
        Path, typer.Option("--html", help="Folder to write the site into (new or empty).")
    ],
    sites: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer needs Optional on Python 3.10
        typer.Option(
            "--sites",
            help="Only these sites' unit pages (glob, repeatable), e.g. 'encoder.layer.1.*'.",
        ),
    ] = None,
    exemplars: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            min=1, max=1000, help="Exemplars per unit page (default: all); most of its size."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a previous export in the folder.")
    ] = False,
) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from neuronatlas.viewer import export_html

    with Progress(
        TextColumn("writing pages"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("pages", total=None)
        report = export_html(
            atlas,
            html,
            sites=sites,
            overwrite=force,
            exemplars=exemplars,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(
        f"Wrote {report.n_pages:,} pages ({report.n_bytes / 1e6:.1f} MB) in {report.seconds:.1f} s. "
        f"Open [bold]{report.path / 'index.html'}[/] in a browser.",
        highlight=False,
    )
