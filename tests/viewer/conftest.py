"""Fixtures of the viewer tests: synthetic atlases, an HTTP client, a live server, a browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from viewer._viewer_util import CHROMIUM, CHROMIUM_ARGS, N_UNITS

from neuronatlas.viewer import create_app, export_html, serve_in_thread, write_synthetic_atlas


@pytest.fixture(scope="session")
def atlas_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 layers x (mlp + resid) sites x 24 units, WordPiece tokens, hostile tokens in the corpus.

    Unit 1 of the first site detects the hostile tokens; its last unit has NaN context slots.
    """
    return write_synthetic_atlas(
        tmp_path_factory.mktemp("atlas") / "atlas",
        n_layers=3,
        n_units=N_UNITS,
        kinds=("mlp", "resid"),
        n_docs=24,
        doc_len=40,
        top_k=8,
        context=5,
        hostile=True,
        seed=11,
    )


@pytest.fixture(scope="session")
def gpt2_atlas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small byte-level (GPT-2 style) atlas without label columns."""
    return write_synthetic_atlas(
        tmp_path_factory.mktemp("gpt2") / "atlas",
        n_layers=2,
        n_units=8,
        n_docs=6,
        doc_len=24,
        token_style="bytelevel",
        labels=False,
        seed=5,
    )


@pytest.fixture(scope="session")
def app(atlas_path: Path):
    return create_app(atlas_path)


@pytest.fixture(scope="session")
def client(app) -> Iterator:
    from starlette.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture(scope="session")
def server_url(atlas_path: Path) -> Iterator[str]:
    with serve_in_thread(atlas_path) as url:
        yield url


@pytest.fixture(scope="session")
def export_dir(atlas_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "site"
    export_html(atlas_path, out)
    return out


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's Chromium is not installed at /usr/bin/chromium (apt-get install chromium)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh page that fails the test on any dialog (alert), page error or CSP violation."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    yield pg
    context.close()
    assert problems == [], problems
