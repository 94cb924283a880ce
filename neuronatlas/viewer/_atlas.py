"""Read an atlas directory for the viewer: the manifest, and the tables through DuckDB.

This reader depends only on the on-disk format (docs/atlas-format.md), so the viewer opens any
atlas that follows it, whoever wrote it. The unit table (without its list columns) is loaded
into an in-memory DuckDB table once, so filtering and sorting 100k+ units takes milliseconds;
exemplars and tokens stay in their Parquet files and are read per request, which keeps memory
independent of the corpus size.

Examples:
    >>> import tempfile
    >>> from neuronatlas.viewer._synthetic import write_synthetic_atlas
    >>> atlas = ViewerAtlas(write_synthetic_atlas(tempfile.mkdtemp() + "/a", n_units=8))
    >>> [s.name for s in atlas.sites][:2]
    ['encoder.layer.0.output.dense:input', 'encoder.layer.1.output.dense:input']
    >>> atlas.query_units(UnitQuery(sort="max", order="desc", per_page=3)).total
    32
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb

from neuronatlas.errors import AtlasError, FormatVersionError, closest
from neuronatlas.viewer._columns import DEFAULT_COLUMNS, KNOWN_COLUMNS, ColumnInfo, column_kind
from neuronatlas.viewer._errors import NotFoundError, ViewerError
from neuronatlas.viewer._query import UnitQuery, quote_ident, unit_query_sql, unit_query_where
from neuronatlas.viewer._registry import UnitColumn, UnitTable
from neuronatlas.viewer._tokens import detect_style, display_run, display_token, is_special

__all__ = ["ContextToken", "Exemplar", "SiteInfo", "UnitPage", "ViewerAtlas"]

FORMAT = "neuronatlas.atlas"
SUPPORTED_VERSIONS = (1,)
_DISPLAY_COLUMNS = ("display", "token_str", "text")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class SiteInfo:
    """A site of the atlas, with its position in the atlas order."""

    name: str
    index: int
    n_units: int
    layer: int | None = None
    kind: str | None = None
    module: str | None = None
    hook: str | None = None


@dataclass(frozen=True)
class ContextToken:
    """One token of an exemplar's context, as shown: text and the unit's activation there."""

    pos: int
    text: str
    raw: str
    act: float | None  # None where the activation was not recorded (NaN)
    focus: bool = False
    special: bool = False


@dataclass(frozen=True)
class Exemplar:
    """One of a unit's top activations, with the context it occurred in."""

    rank: int
    activation: float
    doc: int
    pos: int
    token: str
    context: tuple[ContextToken, ...]
    source: str | None = None
    source_offset: int | None = None


@dataclass
class UnitPage:
    """One page of the unit table."""

    query: UnitQuery
    total: int
    columns: list[ColumnInfo]
    rows: list[dict[str, Any]]
    labels: list[ColumnInfo] = field(default_factory=list)

    @property
    def n_pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class ViewerAtlas:
    """A read-only atlas, opened for browsing.

    Args:
        path: the atlas directory (``atlas.json`` + Parquet tables).
        columns: computed columns to add to the unit table (see
            :func:`neuronatlas.viewer.register_column`); left out when a required column is.
        unit_tables: Parquet files of the atlas keyed by ``(site, unit)`` whose columns join
            the unit table when the file exists (see :func:`neuronatlas.viewer.register_unit_table`).

    Raises:
        AtlasError: the directory, its manifest or ``units.parquet`` is missing or malformed.
        FormatVersionError: the manifest's format version is not one this viewer reads.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        columns: Sequence[UnitColumn] = (),
        unit_tables: Sequence[UnitTable] = (),
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.manifest = self._read_manifest()
        self.files = {
            name: self.path / f"{name}.parquet"
            for name in ("units", "exemplars", "tokens", "docs")
            if (self.path / f"{name}.parquet").is_file()
        }
        if "units" not in self.files:
            raise AtlasError(
                f"The atlas at {self.path} has no units.parquet. Expected an atlas directory "
                "written by `neuronatlas map` (atlas.json, units.parquet, exemplars.parquet, ...)."
            )
        self._db = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        self._cache: dict[str, dict[str, Any]] = {}
        self._load(columns, unit_tables)

    # -- loading ----------------------------------------------------------------------------

    def _read_manifest(self) -> dict[str, Any]:
        if not self.path.is_dir():
            raise AtlasError(
                f"No atlas at {self.path}: expected a directory holding atlas.json and "
                "units.parquet. Build one with `neuronatlas map --out DIR`."
            )
        mpath = self.path / "atlas.json"
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AtlasError(f"{self.path} has no atlas.json; is it an atlas directory?") from None
        except (OSError, ValueError) as exc:
            raise AtlasError(f"{mpath} is not readable JSON ({exc}).") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise AtlasError(f'{mpath} must have "format": "{FORMAT}"; got {got!r}.')
        version = manifest.get("version")
        if version not in SUPPORTED_VERSIONS:
            raise FormatVersionError(
                f"{mpath} has format version {version!r}; this viewer reads versions "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))}. Upgrade neuronatlas or rebuild the atlas."
            )
        return manifest

    def _load(self, extra_columns: Sequence[UnitColumn], unit_tables: Sequence[UnitTable]) -> None:
        db = self._db
        for name, file in self.files.items():
            if name != "units":
                db.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_literal(file)})")
        raw = db.execute(
            f"DESCRIBE SELECT * FROM read_parquet({_literal(self.files['units'])})"
        ).fetchall()
        raw_types = {r[0]: r[1] for r in raw}
        for need in ("site", "unit"):
            if need not in raw_types:
                raise AtlasError(
                    f"{self.files['units']} has no {need!r} column; columns: {', '.join(raw_types)}."
                )
        # sites: the manifest's order first, then any others found in the table
        found = db.execute(
            f"SELECT site, count(*), max(unit) + 1, min(layer) FROM read_parquet({_literal(self.files['units'])}) GROUP BY site"
            if "layer" in raw_types
            else f"SELECT site, count(*), max(unit) + 1, NULL FROM read_parquet({_literal(self.files['units'])}) GROUP BY site"
        ).fetchall()
        counts = {r[0]: (int(r[1]), int(r[2]), r[3]) for r in found}
        listed = [
            s for s in self.manifest.get("sites") or [] if isinstance(s, dict) and "name" in s
        ]
        names = [s["name"] for s in listed if s["name"] in counts]
        names += sorted(set(counts) - set(names))
        meta = {s["name"]: s for s in listed}
        self.sites = []
        for i, name in enumerate(names):
            m = meta.get(name, {})
            _n_rows, n_units, layer = counts[name]
            self.sites.append(SiteInfo(
                name=name, index=i, n_units=max(n_units, int(m.get("n_units") or 0)),
                layer=m.get("layer", layer), kind=m.get("kind"), module=m.get("module"), hook=m.get("hook"),
            ))  # fmt: skip
        self._site_by_name = {s.name: s for s in self.sites}
        db.execute("CREATE TABLE __sites (site VARCHAR, __site_idx INTEGER)")
        db.executemany("INSERT INTO __sites VALUES (?, ?)", [(s.name, s.index) for s in self.sites])

        lists = [c for c, t in raw_types.items() if column_kind(t) == "other"]
        keep = [quote_ident(c) for c in raw_types if c not in lists]
        selects = [f"u.{c}" for c in keep] + ["s.__site_idx"]
        joins = ""
        for i, table in enumerate(unit_tables):
            tname, fname = table.name, table.filename
            tpath = self.path / fname
            if not tpath.is_file():
                continue
            tcols = db.execute(f"DESCRIBE SELECT * FROM read_parquet({_literal(tpath)})").fetchall()
            clash = [c[0] for c in tcols if c[0] in raw_types and c[0] not in ("site", "unit")]
            if clash:
                raise ViewerError(
                    f"Unit table {tname!r} ({fname}) repeats columns of units.parquet: {', '.join(clash)}."
                )
            alias = f"__t{i}"
            joins += f" LEFT JOIN read_parquet({_literal(tpath)}) {alias} USING (site, unit)"
            selects += [
                f"{alias}.{quote_ident(c[0])}"
                for c in tcols
                if c[0] not in ("site", "unit") and column_kind(c[1]) != "other"
            ]
        present = set(raw_types)
        added = {}
        for col in extra_columns:
            if not set(col.requires) <= present or col.name in present:
                continue
            selects.append(f"({col.sql}) AS {quote_ident(col.name)}")
            added[col.name] = col
        sql = (
            f"CREATE TABLE units AS SELECT {', '.join(selects)} FROM read_parquet({_literal(self.files['units'])}) u"
            f" JOIN __sites s USING (site){joins} ORDER BY s.__site_idx, u.unit"
        )
        try:
            db.execute(sql)
        except duckdb.Error as exc:
            raise ViewerError(
                f"Could not load the unit table of {self.path} with the registered columns: {exc}"
            ) from exc
        labels_listed = self.manifest.get("labels") or []
        if isinstance(labels_listed, Mapping):
            labels_listed = list(labels_listed)
        self.columns: dict[str, ColumnInfo] = {}
        for name, dtype, *_ in db.execute("DESCRIBE units").fetchall():
            if name.startswith("__"):
                continue
            kind = column_kind(dtype)
            label = kind == "bool" and (name.startswith("label_") or name in labels_listed)
            title, desc = KNOWN_COLUMNS.get(name, (name, ""))
            if name in added:
                title, desc = added[name].title or title, added[name].description or desc
            if label:
                title = name[6:] if name.startswith("label_") else name
                desc = desc or f"label: {title}"
            self.columns[name] = ColumnInfo(name, kind, title, desc, label)
        self.list_columns = lists
        self.default_columns = tuple(c for c in DEFAULT_COLUMNS if c in self.columns) + tuple(
            c.name for c in added.values() if c.default
        )
        self.n_units = int(db.execute("SELECT count(*) FROM units").fetchall()[0][0])
        n_rows = sum(c[0] for c in counts.values())
        if self.n_units != n_rows:
            raise ViewerError(
                f"A registered unit table of {self.path} holds repeated (site, unit) keys: the unit "
                f"table grew from {n_rows} to {self.n_units} rows. Each unit may appear once."
            )

    # -- connections ------------------------------------------------------------------------

    @contextmanager
    def _con(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own for one request (DuckDB connections are not thread-safe)."""
        with self._lock:
            con = self._db.cursor()
        try:
            yield con
        finally:
            con.close()

    def sql(self, query: str, params: Sequence[object] = ()) -> list[tuple]:
        """Run a read query on the atlas tables (``units``, ``exemplars``, ``tokens``, ``docs``).

        For extensions: pass every value as a parameter; never format user text into ``query``.
        Safe to call from several threads at once.
        """
        with self._con() as con:
            return con.execute(query, list(params)).fetchall()

    # -- sites and units ----------------------------------------------------------------------

    @property
    def label_columns(self) -> list[ColumnInfo]:
        return [c for c in self.columns.values() if c.label]

    @property
    def title(self) -> str:
        model = self.manifest.get("model") or {}
        return str(model.get("name") or self.path.name)

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete", True))

    def site(self, name: str) -> SiteInfo:
        """The site called ``name``.

        Raises:
            NotFoundError: no such site (the message lists the closest names).
        """
        info = self._site_by_name.get(name)
        if info is None:
            near = closest(name, self._site_by_name)
            raise NotFoundError(
                f"The atlas has no site {name!r}."
                + (f" Closest: {', '.join(near)}." if near else "")
                + f" It has {len(self.sites)} sites, listed on the overview page."
            )
        return info

    def check_unit(self, site: str, unit: int) -> SiteInfo:
        """Validate ``(site, unit)``; return the site.

        Raises:
            NotFoundError: unknown site, or a unit outside ``[0, n_units)``.
        """
        info = self.site(site)
        if not 0 <= unit < info.n_units:
            raise NotFoundError(
                f"Site {site!r} has units 0 to {info.n_units - 1}; there is no unit {unit}."
            )
        return info

    def neighbors(
        self, site: str, unit: int
    ) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
        """The units before and after ``(site, unit)`` in atlas order (crossing sites)."""
        info = self.check_unit(site, unit)
        prev = (site, unit - 1) if unit > 0 else None
        if prev is None and info.index > 0:
            s = self.sites[info.index - 1]
            prev = (s.name, s.n_units - 1)
        nxt = (site, unit + 1) if unit + 1 < info.n_units else None
        if nxt is None and info.index + 1 < len(self.sites):
            nxt = (self.sites[info.index + 1].name, 0)
        return prev, nxt

    def unit_row(self, site: str, unit: int) -> dict[str, Any]:
        """Every column of one unit (including ``hist_edges`` / ``hist_counts``), or {} if absent."""
        self.check_unit(site, unit)
        cached = self._cache.get(site)
        if cached is not None:
            return cached["rows"].get(unit, {})
        rows = self._unit_rows(site, unit)
        return rows.get(unit, {})

    def _unit_rows(self, site: str, unit: int | None = None) -> dict[int, dict[str, Any]]:
        cond, params = "site = ?", [site]
        if unit is not None:
            cond += " AND unit = ?"
            params.append(unit)
        cols = [f"u.{quote_ident(c)}" for c in self.columns]
        sql = f"SELECT {', '.join(cols)} FROM units u"
        if self.list_columns:  # list columns stay on disk: read the site's (or unit's) rows
            lsel = ", ".join(["site", "unit", *map(quote_ident, self.list_columns)])
            units = _literal(self.files["units"])
            sql = (
                f"SELECT {', '.join(cols)}, {', '.join('l.' + quote_ident(c) for c in self.list_columns)}"
                f" FROM units u LEFT JOIN (SELECT {lsel} FROM read_parquet({units}) WHERE {cond}) l"
                " ON l.site = u.site AND l.unit = u.unit"
            )
            params = params + params
        sql += f" WHERE {' AND '.join('u.' + c for c in cond.split(' AND '))}"
        names = [*self.columns, *self.list_columns]
        at = names.index("unit")
        return {int(r[at]): dict(zip(names, r, strict=True)) for r in self.sql(sql, params)}

    # -- the unit table ---------------------------------------------------------------------

    def query_units(self, query: UnitQuery) -> UnitPage:
        """One page of the unit table (filters, sort and pagination of ``query``).

        Raises:
            NotFoundError: the page is past the last page of the result.
        """
        shown = query.shown_columns(self.columns, self.default_columns)
        labels = self.label_columns
        names = list(
            dict.fromkeys(["site", "unit", *(c.name for c in shown), *(c.name for c in labels)])
        )
        where, wparams = unit_query_where(query, self.columns)
        total = int(self.sql(f"SELECT count(*) FROM units WHERE {where}", wparams)[0][0])
        page = UnitPage(query=query, total=total, columns=shown, rows=[], labels=labels)
        if query.page > page.n_pages:
            raise NotFoundError(
                f"Page {query.page} does not exist: the query matches {total} units, "
                f"{page.n_pages} page(s) of {query.per_page}."
            )
        sql, params = unit_query_sql(query, self.columns, select=", ".join(map(quote_ident, names)))
        page.rows = [dict(zip(names, r, strict=True)) for r in self.sql(sql, params)]
        return page

    # -- exemplars and tokens -----------------------------------------------------------------

    @cached_property
    def token_style(self) -> str:
        """Tokenizer convention of the corpus (see :mod:`neuronatlas.viewer._tokens`)."""
        if "tokens" in self.files:
            sample = [
                r[0]
                for r in self.sql("SELECT token FROM tokens WHERE token IS NOT NULL LIMIT 20000")
            ]
        elif "exemplars" in self.files:
            sample = [
                r[0]
                for r in self.sql("SELECT token FROM exemplars WHERE token IS NOT NULL LIMIT 20000")
            ]
        else:
            sample = []
        return detect_style(sample)

    @cached_property
    def _exemplar_columns(self) -> set[str]:
        return (
            {r[0] for r in self.sql("DESCRIBE exemplars")} if "exemplars" in self.files else set()
        )

    @cached_property
    def _display_column(self) -> str | None:
        if "tokens" not in self.files:
            return None
        names = {r[0] for r in self.sql("DESCRIBE tokens")}
        return next((c for c in _DISPLAY_COLUMNS if c in names), None)

    def display(self, token: str | None) -> str:
        """A vocabulary string shown on its own (e.g. a unit's top token)."""
        return display_token(token, self.token_style) if token is not None else ""

    def exemplars(self, site: str, unit: int, limit: int | None = None) -> list[Exemplar]:
        """The top exemplars of one unit, strongest first, each with its shaded context."""
        self.check_unit(site, unit)
        cached = self._cache.get(site)
        if cached is not None:
            found = cached["exemplars"].get(unit, [])
        else:
            found = self._exemplars(site, unit).get(unit, [])
        return found if limit is None else found[:limit]

    def _exemplars(self, site: str, unit: int | None) -> dict[int, list[Exemplar]]:
        if "exemplars" not in self.files:
            return {}
        cond, params = "site = ?", [site]
        if unit is not None:
            cond += " AND unit = ?"
            params.append(unit)
        ex_cols = self._exemplar_columns
        has_ctx = {"ctx_start", "ctx_acts"} <= ex_cols
        tok = "token" if "token" in ex_cols else "NULL"
        ctx = "ctx_start, ctx_acts" if has_ctx else "pos, [activation]"
        rows = self.sql(
            f"SELECT unit, rank, activation, doc, pos, {tok}, {ctx} FROM exemplars WHERE {cond} ORDER BY unit, rank",
            params,
        )
        if not rows:
            return {}
        tokens: dict[tuple[int, int], tuple[str, str | None]] = {}
        if "tokens" in self.files:
            tokens = self._context_tokens(rows)
        docs: dict[int, tuple[str | None, int | None]] = {}
        if "docs" in self.files:
            doc_ids = sorted({int(r[3]) for r in rows})
            for chunk in range(0, len(doc_ids), 1000):
                part = doc_ids[chunk : chunk + 1000]
                for d, source, offset in self.sql(
                    f"SELECT doc, source, source_offset FROM docs WHERE doc IN ({', '.join('?' * len(part))})",
                    part,
                ):
                    docs[int(d)] = (source, None if offset is None else int(offset))
        style = self.token_style
        out: dict[int, list[Exemplar]] = {}
        for u, rank, act, doc, pos, token, ctx_start, ctx_acts in rows:
            doc, pos, start = int(doc), int(pos), int(ctx_start)
            run_pos, run_raw, run_shown = [], [], []
            for i in range(len(ctx_acts or ())):
                raw, text = tokens.get((doc, start + i), (None, None))
                if raw is None and start + i == pos and token is not None:
                    raw = token
                if raw is not None:
                    run_pos.append(i)
                    run_raw.append(raw)
                    run_shown.append(text)
            texts = display_run(run_raw, style)
            texts = [t if s is None else s for s, t in zip(run_shown, texts, strict=True)]
            context = tuple(
                ContextToken(
                    pos=start + i,
                    text=text,
                    raw=raw,
                    act=None
                    if ctx_acts[i] is None or not math.isfinite(ctx_acts[i])
                    else float(ctx_acts[i]),
                    focus=start + i == pos,
                    special=is_special(raw),
                )
                for i, raw, text in zip(run_pos, run_raw, texts, strict=True)
            )
            src = docs.get(doc, (None, None))
            out.setdefault(int(u), []).append(
                Exemplar(
                    int(rank),
                    float(act),
                    doc,
                    pos,
                    token if token is not None else "",
                    context,
                    src[0],
                    src[1],
                )
            )
        return out

    def _context_tokens(self, rows: list[tuple]) -> dict[tuple[int, int], tuple[str, str | None]]:
        """``(doc, pos) -> (token, display text or None)`` for every context slot of ``rows``."""
        spans: dict[int, tuple[int, int]] = {}
        for r in rows:
            doc, start, n = int(r[3]), int(r[6]), len(r[7] or ())
            lo, hi = spans.get(doc, (start, start + n - 1))
            spans[doc] = (min(lo, start), max(hi, start + n - 1))
        col = self._display_column
        sel = "t.doc, t.pos, t.token" + (f", t.{quote_ident(col)}" if col else ", NULL")
        docs = sorted(spans)
        if len(docs) > 64:  # bulk (a whole site): one join against the spans
            got = self.sql(
                f"SELECT {sel} FROM tokens t JOIN (SELECT unnest(?::BIGINT[]) AS doc, "
                "unnest(?::INTEGER[]) AS lo, unnest(?::INTEGER[]) AS hi) s "
                "ON t.doc = s.doc AND t.pos BETWEEN s.lo AND s.hi",
                [docs, [spans[d][0] for d in docs], [spans[d][1] for d in docs]],
            )
        else:  # one unit: a filter the Parquet reader prunes row groups with
            cond = " OR ".join("(t.doc = ? AND t.pos BETWEEN ? AND ?)" for _ in docs)
            params = [v for d in docs for v in (d, *spans[d])]
            got = self.sql(
                f"SELECT {sel} FROM tokens t WHERE t.doc IN ({', '.join('?' * len(docs))}) AND ({cond})",
                [*docs, *params],
            )
        return {(int(r[0]), int(r[1])): (r[2], r[3]) for r in got}

    # -- bulk access for the static export ----------------------------------------------------

    @contextmanager
    def preload(self, site: str) -> Iterator[None]:
        """Within the block, serve one site's unit rows and exemplars from memory.

        The static export renders every unit of a site; this turns one query per unit into
        one query per site. Handlers (including extensions') see no difference.
        """
        self.site(site)
        self._cache[site] = {
            "rows": self._unit_rows(site),
            "exemplars": self._exemplars(site, None),
        }
        try:
            yield
        finally:
            self._cache.pop(site, None)

    # -- the overview -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Manifest facts for headers: model, corpus, settings, counts."""
        return {
            "model": self.manifest.get("model") or {},
            "corpus": self.manifest.get("corpus") or {},
            "settings": self.manifest.get("settings") or {},
            "timings": self.manifest.get("timings") or {},
            "nonfinite": self.manifest.get("nonfinite") or {},
            "n_units": self.n_units,
            "n_sites": len(self.sites),
        }

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"ViewerAtlas({str(self.path)!r}, sites={len(self.sites)}, units={self.n_units})"
