"""Helpers of the viewer tests: constants of the test atlas, a table parser, reference SQL."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import duckdb

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SITE0 = "encoder.layer.0.output.dense:input"
N_UNITS = 24


class _Table(HTMLParser):
    """Cells (text) of the rows of ``<tbody id="units-body">``, and the header texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.head: list[str] = []
        self._in_body = self._in_head = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "tbody" and a.get("id") == "units-body":
            self._in_body = True
        elif tag == "tr" and a.get("id") == "units-head":
            self._in_head = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag in ("td", "th") and (self._in_body or self._in_head):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "tr":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            (self.rows[-1] if self._in_body else self.head).append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str) -> tuple[list[str], list[list[str]]]:
    """Header texts and row cell texts of the unit table in ``html``."""
    parser = _Table()
    parser.feed(html)
    return parser.head, parser.rows


def ref_sql(query: str, params: list | tuple = ()) -> list[tuple]:
    """Run a reference query on a fresh DuckDB connection (independent of the viewer's)."""
    con = duckdb.connect()
    try:
        return con.execute(query, list(params)).fetchall()
    finally:
        con.close()


def ref_df(query: str, params: list | tuple = ()):
    """A reference query's result as a pandas DataFrame."""
    con = duckdb.connect()
    try:
        return con.execute(query, list(params)).df()
    finally:
        con.close()
