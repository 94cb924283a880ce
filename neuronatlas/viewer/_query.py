"""The unit table's query: parsed from URL parameters, validated, turned into SQL.

A query is a plain value (:class:`UnitQuery`). :meth:`UnitQuery.from_params` accepts exactly
the parameters below and rejects anything else with a message that names what was expected:

=============  ===============================================================================
``q``          text searched in site names and top tokens (case-insensitive); a number also
               matches the unit index
``site``       keep these sites (repeatable; names must exist)
``layer``      keep these layers (repeatable; integers)
``label``      keep units with this label (``label_dead`` or ``dead``); ``!dead`` excludes it
``top_token``  keep units whose top token is exactly this vocabulary string
``range``      ``COLUMN:LOW:HIGH`` on any numeric column, either bound may be empty
               (``range=kurtosis:10:`` keeps kurtosis >= 10); repeatable
``sort``       any sortable column; ``order`` is ``asc`` or ``desc``
``page``       1-based page; ``per_page`` rows per page (1-500)
``col``        columns to show (repeatable); the default set otherwise
=============  ===============================================================================

:func:`unit_query_sql` builds the SQL. Column names come only from the table's own schema
(validated here, then quoted as identifiers); every value is a bound parameter.

Examples:
    >>> cols = {"site": ColumnInfo("site", "str", "site"), "max": ColumnInfo("max", "float", "max")}
    >>> q = UnitQuery.from_params([("range", "max:1:"), ("sort", "max"), ("order", "desc")],
    ...                           columns=cols, sites=["a"])
    >>> sql, params = unit_query_sql(q, cols, select="site")
    >>> params
    [1.0, 50, 0]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from neuronatlas.errors import closest
from neuronatlas.viewer._columns import DEFAULT_COLUMNS, ColumnInfo
from neuronatlas.viewer._errors import BadRequestError

__all__ = ["MAX_PER_PAGE", "RangeFilter", "UnitQuery", "quote_ident", "unit_query_sql"]

MAX_PER_PAGE = 500
MAX_PAGE = 10_000_000
_PARAMS = ("q", "site", "layer", "label", "top_token", "range", "sort", "order", "page",
           "per_page", "col")  # fmt: skip
_SINGLE = ("q", "top_token", "sort", "order", "page", "per_page")
_MAX_TEXT = 200
_MAX_REPEAT = 64


def quote_ident(name: str) -> str:
    """Quote a (schema-validated) column name as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class RangeFilter:
    """Keep rows with ``lo <= column <= hi`` (either bound may be None)."""

    column: str
    lo: float | None = None
    hi: float | None = None

    def to_param(self) -> str:
        fmt = lambda v: "" if v is None else repr(v)  # noqa: E731
        return f"{self.column}:{fmt(self.lo)}:{fmt(self.hi)}"


@dataclass(frozen=True)
class UnitQuery:
    """One request to the unit table (see the module docstring for the URL parameters)."""

    q: str = ""
    sites: tuple[str, ...] = ()
    layers: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()
    not_labels: tuple[str, ...] = ()
    top_token: str | None = None
    ranges: tuple[RangeFilter, ...] = ()
    sort: str | None = None
    order: str = "asc"
    page: int = 1
    per_page: int = 50
    columns: tuple[str, ...] = field(default=())

    def replace(self, **changes: object) -> UnitQuery:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def to_params(self, *, page: bool = True) -> list[tuple[str, str]]:
        """The URL parameters that reproduce this query (defaults left out)."""
        out: list[tuple[str, str]] = []
        if self.q:
            out.append(("q", self.q))
        out += [("site", s) for s in self.sites]
        out += [("layer", str(v)) for v in self.layers]
        out += [("label", v) for v in self.labels]
        out += [("label", "!" + v) for v in self.not_labels]
        if self.top_token is not None:
            out.append(("top_token", self.top_token))
        out += [("range", r.to_param()) for r in self.ranges]
        if self.sort:
            out.append(("sort", self.sort))
            out.append(("order", self.order))
        if page and self.page != 1:
            out.append(("page", str(self.page)))
        if self.per_page != 50:
            out.append(("per_page", str(self.per_page)))
        out += [("col", c) for c in self.columns]
        return out

    @property
    def filtered(self) -> bool:
        return bool(
            self.q or self.sites or self.layers or self.labels or self.not_labels
            or self.top_token is not None or self.ranges
        )  # fmt: skip

    @classmethod
    def from_params(
        cls,
        params: Iterable[tuple[str, str]],
        *,
        columns: Mapping[str, ColumnInfo],
        sites: Sequence[str],
    ) -> UnitQuery:
        """Parse and validate URL parameters (a multi-dict's ``items()``).

        Raises:
            BadRequestError: an unknown parameter, a repeated single-valued one, an unknown
                column, site or label, or a value that does not parse or is out of range.
        """
        multi: dict[str, list[str]] = {}
        for key, value in params:
            if value == "":
                continue  # an empty form field means "no filter"
            if key not in _PARAMS:
                near = closest(key, _PARAMS)
                raise BadRequestError(
                    f"Unknown parameter {key!r} for the unit table. Expected one of "
                    f"{', '.join(_PARAMS)}" + (f" (did you mean {near[0]!r}?)" if near else ".")
                )
            multi.setdefault(key, []).append(value)
        for key, values in multi.items():
            if key in _SINGLE and len(values) > 1:
                raise BadRequestError(
                    f"Parameter {key!r} was given {len(values)} times; give it once."
                )
            if len(values) > _MAX_REPEAT:
                raise BadRequestError(
                    f"Parameter {key!r} was given {len(values)} times; at most {_MAX_REPEAT}."
                )
            for v in values:
                if len(v) > _MAX_TEXT:
                    raise BadRequestError(
                        f"Parameter {key!r} is {len(v)} characters long; at most {_MAX_TEXT}."
                    )
        one = lambda k: multi.get(k, [None])[0]  # noqa: E731

        site_set = set(sites)
        for s in multi.get("site", []):
            if s not in site_set:
                near = closest(s, sites)
                raise BadRequestError(
                    f"Unknown site {s!r}."
                    + (f" Closest: {', '.join(near)}." if near else "")
                    + f" The atlas has {len(sites)} sites; see the overview page."
                )
        labels, not_labels = [], []
        label_cols = [c.name for c in columns.values() if c.label]
        for raw in multi.get("label", []):
            neg = raw.startswith("!")
            name = raw[1:] if neg else raw
            if name not in columns and "label_" + name in columns:
                name = "label_" + name
            if name not in label_cols:
                near = closest(name, label_cols)
                raise BadRequestError(
                    f"Unknown label {raw!r}. Labels of this atlas: "
                    + (", ".join(label_cols) or "none")
                    + (f" (did you mean {near[0]!r}?)" if near else ".")
                )
            (not_labels if neg else labels).append(name)
        ranges = [_parse_range(r, columns) for r in multi.get("range", [])]
        sort = one("sort") or None
        if sort is not None:
            _check_column(sort, columns, "sort by", sortable=True)
        order = one("order") or "asc"
        if order not in ("asc", "desc"):
            raise BadRequestError(f"Parameter 'order' must be 'asc' or 'desc'; got {order!r}.")
        shown = tuple(multi.get("col", []))
        for c in shown:
            _check_column(c, columns, "show", sortable=False)
        return cls(
            q=(one("q") or "").strip(),
            sites=tuple(dict.fromkeys(multi.get("site", []))),
            layers=tuple(
                dict.fromkeys(_parse_int(v, "layer", -1, 100_000) for v in multi.get("layer", []))
            ),
            labels=tuple(dict.fromkeys(labels)),
            not_labels=tuple(dict.fromkeys(not_labels)),
            top_token=one("top_token"),
            ranges=tuple(ranges),
            sort=sort,
            order=order,
            page=_parse_int(one("page") or "1", "page", 1, MAX_PAGE),
            per_page=_parse_int(one("per_page") or "50", "per_page", 1, MAX_PER_PAGE),
            columns=tuple(dict.fromkeys(shown)),
        )

    def shown_columns(
        self, columns: Mapping[str, ColumnInfo], defaults: Sequence[str] = DEFAULT_COLUMNS
    ) -> list[ColumnInfo]:
        """The columns to show: the requested ones, or the defaults that exist (+ top token)."""
        names = self.columns or tuple(c for c in defaults if c in columns)
        if not self.columns and "top_token" in columns:
            names += ("top_token",)
        return [columns[n] for n in dict.fromkeys(names)]


def _parse_int(text: str, name: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadRequestError(f"Parameter {name!r} must be an integer; got {text!r}.") from None
    if not lo <= value <= hi:
        raise BadRequestError(f"Parameter {name!r} must be in [{lo}, {hi}]; got {value}.")
    return value


def _check_column(
    name: str, columns: Mapping[str, ColumnInfo], what: str, *, sortable: bool
) -> ColumnInfo:
    col = columns.get(name)
    ok = [c.name for c in columns.values() if c.sortable or not sortable]
    if col is None or (sortable and not col.sortable):
        near = closest(name, ok)
        raise BadRequestError(
            f"Cannot {what} column {name!r}: the unit table has no such column"
            + (" that can be sorted" if col is not None else "")
            + (f". Did you mean {near[0]!r}?" if near else ".")
            + f" Columns: {', '.join(ok)}."
        )
    return col


def _parse_float(text: str, what: str) -> float | None:
    if text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequestError(
            f"The {what} bound of a range must be a number; got {text!r}."
        ) from None
    if math.isnan(value):
        raise BadRequestError(f"The {what} bound of a range must be a number, not NaN.")
    return value


def _parse_range(text: str, columns: Mapping[str, ColumnInfo]) -> RangeFilter:
    parts = text.rsplit(":", 2)
    if len(parts) != 3:
        raise BadRequestError(
            f"A range is COLUMN:LOW:HIGH (either bound may be empty, e.g. 'kurtosis:10:'); got {text!r}."
        )
    name, lo_text, hi_text = parts
    col = _check_column(name, columns, "filter on", sortable=True)
    if not col.numeric:
        numeric = [c.name for c in columns.values() if c.numeric]
        raise BadRequestError(
            f"Ranges apply to numeric columns; {name!r} is {col.kind}. Numeric: {', '.join(numeric)}."
        )
    lo, hi = _parse_float(lo_text, "low"), _parse_float(hi_text, "high")
    if lo is None and hi is None:
        raise BadRequestError(f"The range {text!r} has neither a low nor a high bound.")
    if lo is not None and hi is not None and lo > hi:
        raise BadRequestError(f"The range {text!r} is empty: low {lo} > high {hi}.")
    return RangeFilter(name, lo, hi)


def unit_query_where(
    query: UnitQuery, columns: Mapping[str, ColumnInfo]
) -> tuple[str, list[object]]:
    """The WHERE clause (``"TRUE"`` when unfiltered) and its parameters."""
    where: list[str] = []
    params: list[object] = []
    if query.q:
        needle = query.q.lower()
        text = ["contains(lower(site), ?)"]
        params.append(needle)
        if "top_token" in columns:
            text.append("contains(lower(coalesce(top_token, '')), ?)")
            params.append(needle)
        if needle.isdigit() and len(needle) < 10:
            text.append("unit = ?")
            params.append(int(needle))
        where.append("(" + " OR ".join(text) + ")")
    if query.sites:
        where.append("site IN (" + ", ".join("?" * len(query.sites)) + ")")
        params += list(query.sites)
    if query.layers:
        where.append("layer IN (" + ", ".join("?" * len(query.layers)) + ")")
        params += list(query.layers)
    for name in query.labels:
        where.append(f"coalesce({quote_ident(name)}, FALSE)")
    for name in query.not_labels:
        where.append(f"NOT coalesce({quote_ident(name)}, FALSE)")
    if query.top_token is not None:
        where.append("top_token = ?")
        params.append(query.top_token)
    for r in query.ranges:
        ident = quote_ident(r.column)
        if columns[r.column].kind == "float":  # DuckDB orders NaN above +inf: keep it out
            where.append(f"NOT isnan({ident})")
        if r.lo is not None:
            where.append(f"{ident} >= ?")
            params.append(r.lo)
        if r.hi is not None:
            where.append(f"{ident} <= ?")
            params.append(r.hi)
    return (" AND ".join(where) or "TRUE"), params


def unit_query_sql(
    query: UnitQuery, columns: Mapping[str, ColumnInfo], *, select: str, table: str = "units"
) -> tuple[str, list[object]]:
    """SQL for one page of the unit table: ``select`` columns, filtered, sorted, paginated.

    Rows sort by the requested column (NaN and NULL last in both orders), then by site order
    and unit, so pages are stable.
    """
    where, params = unit_query_where(query, columns)
    order = []
    if query.sort:
        col = columns[query.sort]
        ident = quote_ident(col.name)
        if col.kind == "float":
            order.append(f"({ident} IS NULL OR isnan({ident}))")
        direction = "DESC" if query.order == "desc" else "ASC"
        order.append(f"{ident} {direction} NULLS LAST")
    order += ["__site_idx", "unit"]
    sql = f"SELECT {select} FROM {table} WHERE {where} ORDER BY {', '.join(order)} LIMIT ? OFFSET ?"
    return sql, [*params, query.per_page, query.offset]
