"""Columns of the unit table: their kinds, titles, descriptions and how values are shown.

The number format here is mirrored exactly by ``fmtNum`` in ``static/units.js`` (the static
export filters and renders the table in the browser); tests compare both renderings.

Examples:
    >>> fmt_value(0.012345, "float"), fmt_value(123456.0, "float"), fmt_value(1234567, "int")
    ('0.01235', '1.23e+5', '1,234,567')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ColumnInfo", "column_kind", "fmt_value"]

#: column -> (short title, description); from docs/atlas-format.md
KNOWN_COLUMNS: dict[str, tuple[str, str]] = {
    "site": ("site", "site name: the module and hook the units were recorded at"),
    "layer": ("layer", "block index of the site"),
    "unit": ("unit", "unit index within the site (0-based)"),
    "count": ("count", "finite activations counted"),
    "mean": ("mean", "mean activation"),
    "std": ("std", "standard deviation (population)"),
    "var": ("var", "variance (population)"),
    "skew": ("skew", "skewness: standardized third moment"),
    "kurtosis": ("kurtosis", "excess kurtosis (Gaussian = 0)"),
    "min": ("min", "smallest activation"),
    "max": ("max", "largest activation"),
    "frac_active": ("active", "fraction of activations > 0"),
    "frac_above": ("above thr.", "fraction of activations above the atlas threshold"),
    "p50": ("p50", "median activation"),
    "p90": ("p90", "90th percentile"),
    "p99": ("p99", "99th percentile"),
    "p999": ("p99.9", "99.9th percentile"),
    "n_nan": ("NaN", "NaN activations seen (kept out of all statistics)"),
    "n_posinf": ("+inf", "+inf activations seen (kept out of all statistics)"),
    "n_neginf": ("-inf", "-inf activations seen (kept out of all statistics)"),
    "top_token": ("top token", "token of the strongest exemplar"),
    "abs_max": ("max |a|", "largest absolute activation: max(|min|, |max|)"),
}

#: shown in the unit table unless the request picks its own columns
DEFAULT_COLUMNS = ("site", "unit", "mean", "std", "max", "frac_active", "kurtosis", "p99")


@dataclass(frozen=True)
class ColumnInfo:
    """One column of the unit table.

    Attributes:
        name: column name in the table (a validated SQL identifier, never user text).
        kind: ``"int" | "float" | "bool" | "str" | "other"``; only the first four can be
            filtered and sorted.
        title: short header text.
        description: one line, shown as the header's tooltip.
        label: True for label columns (booleans shown as badges).
    """

    name: str
    kind: str
    title: str
    description: str = ""
    label: bool = False

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "float")

    @property
    def sortable(self) -> bool:
        return self.kind in ("int", "float", "bool", "str")

    @property
    def label_name(self) -> str:
        """A label column's name without its ``label_`` prefix."""
        return self.name[6:] if self.name.startswith("label_") else self.name


def column_kind(duckdb_type: str) -> str:
    """Map a DuckDB type name to a column kind."""
    t = duckdb_type.upper()
    if t == "BOOLEAN":
        return "bool"
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
             "UINTEGER", "UBIGINT"):  # fmt: skip
        return "int"
    if t in ("FLOAT", "DOUBLE", "REAL") or t.startswith("DECIMAL"):
        return "float"
    if t == "VARCHAR":
        return "str"
    return "other"


def fmt_value(value: object, kind: str) -> str:
    """Show one table value: floats with 4 significant digits, exponents outside [1e-3, 1e4)."""
    if value is None:
        return "—"
    if kind == "bool":
        return "✓" if value else ""
    if kind == "int":
        return f"{int(value):,}"  # type: ignore[call-overload]
    if kind == "float":
        v = float(value)  # type: ignore[arg-type]
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        if v == 0:
            return "0"
        if 1e-3 <= abs(v) < 1e4:
            text = f"{v:.4g}"
            if "e" not in text:  # 9999.7 rounds to 1e+04: fall through to the exponent form
                return text
        mantissa, exp = f"{v:.2e}".split("e")
        return f"{mantissa}e{'+' if exp[0] == '+' else '-'}{int(exp[1:])}"
    return str(value)
