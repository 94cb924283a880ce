"""Derived sites: units computed from an atlas (SAE features, …) appended as sites of their own.

A derived site behaves like a recorded one: its units are rows of ``units.parquet``, its
exemplars rows of ``exemplars.parquet``, and it has an entry in ``atlas.json``'s ``sites``
(with ``"source"`` naming what it was derived from). Appending is safe against a crash:
the new tables are written beside the old ones and renamed over them, and the manifest,
which is what readers go by, is replaced last. Appending a site whose name already exists
replaces it (only a derived site: recorded sites are refused).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from neuronatlas.atlas import _format as fmt
from neuronatlas.errors import AtlasError

__all__ = ["append_site_units", "remove_site_units"]

_SITE_KEYS = ("name", "kind", "layer", "n_units")
_EXEMPLAR_TYPES = {
    "site": pa.string(),
    "unit": pa.int32(),
    "rank": pa.int32(),
    "activation": pa.float32(),
    "doc": pa.int64(),
    "pos": pa.int32(),
    "token_id": pa.int64(),
    "token": pa.string(),
    "ctx_start": pa.int32(),
    "ctx_acts": pa.list_(pa.float32()),
}


def _path(atlas: Any) -> Path:
    return Path(getattr(atlas, "path", atlas))


def _check_entry(entry: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in (*_SITE_KEYS, "source") if k not in entry]
    if missing:
        raise AtlasError(
            f"A derived site entry needs {[*_SITE_KEYS, 'source']}; {missing} are missing "
            f"from {entry!r}."
        )
    for s in manifest["sites"]:
        if s["name"] == entry["name"] and "source" not in s:
            raise AtlasError(
                f"The atlas already records a site named {entry['name']!r}; a derived site "
                "cannot replace a recorded one. Choose another name."
            )
    return dict(entry)


def _check_tables(name: str, n_units: int, units: pd.DataFrame, exemplars: pd.DataFrame) -> None:
    for what, df, cols in (
        ("units", units, ("site", "unit")),
        ("exemplars", exemplars, ("site", "unit", "rank", "activation", "doc", "pos")),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise AtlasError(f"The derived {what} table lacks the columns {missing}.")
        other = set(df["site"].unique()) - {name}
        if other:
            raise AtlasError(
                f"The derived {what} rows must all belong to site {name!r}; got {sorted(other)}."
            )
    if sorted(units["unit"].tolist()) != list(range(n_units)):
        raise AtlasError(
            f"The derived units table must hold units 0…{n_units - 1} of {name!r} once each; "
            f"it has {len(units)} rows."
        )


def _exemplar_table(ex: pd.DataFrame) -> pa.Table:
    """The exemplars as Arrow with the atlas's types; NaN context slots stay NaN (not null)."""
    import numpy as np

    n = len(ex)
    arrays = []
    for col, typ in _EXEMPLAR_TYPES.items():
        if col == "ctx_acts":
            if col in ex.columns and n:
                rows = [np.asarray(v, dtype=np.float32).reshape(-1) for v in ex[col]]
                offsets = np.zeros(n + 1, dtype=np.int32)
                offsets[1:] = np.cumsum([len(r) for r in rows])
                arrays.append(
                    pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(rows)))
                )
            else:
                arrays.append(pa.array([None] * n, typ))
        elif col in ex.columns:
            arrays.append(pa.array(ex[col].tolist(), typ, from_pandas=True))
        else:
            arrays.append(pa.array([None] * n, typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(list(_EXEMPLAR_TYPES.items())))


def _merge_table(target: Path, keep_not_site: str, new: pa.Table, tmpdir: Path) -> Path:
    """Write ``target``'s rows of other sites followed by ``new`` to a temporary file."""
    import duckdb

    new_file = tmpdir / ("new-" + target.name)
    pq.write_table(new, new_file)
    out = tmpdir / target.name
    con = duckdb.connect()
    try:
        q = lambda p: str(p).replace("'", "''")  # noqa: E731
        con.execute(
            f"copy (select * from read_parquet('{q(target)}') where site <> ? "
            f"union all by name select * from read_parquet('{q(new_file)}')) "
            f"to '{q(out)}' (format parquet, compression zstd)",
            [keep_not_site],
        )
    finally:
        con.close()
    return out


def append_site_units(
    atlas: Any,
    site_entry: dict[str, Any],
    units_df: pd.DataFrame,
    exemplars_df: pd.DataFrame,
) -> dict[str, Any]:
    """Add a derived site's units and exemplars to an atlas (replacing one of that name).

    Args:
        atlas: an atlas directory or :class:`~neuronatlas.atlas.Atlas`.
        site_entry: its ``atlas.json`` entry: ``name``, ``kind``, ``layer``, ``n_units``,
            ``source`` (what it derives from) and anything else describing it.
        units_df: one row per unit: ``site``, ``unit`` (0 … n_units−1) and statistics columns
            named as in ``units.parquet`` (``layer`` is filled from the entry).
        exemplars_df: ``site, unit, rank, activation, doc, pos`` and optionally ``token_id,
            token, ctx_start, ctx_acts``.

    Returns:
        The site entry as written.

    Raises:
        AtlasError: malformed tables or entry, or a name that is a recorded site.
    """
    path = _path(atlas)
    manifest = fmt.read_manifest(path)
    entry = _check_entry(site_entry, manifest)
    name = entry["name"]
    _check_tables(name, int(entry["n_units"]), units_df, exemplars_df)
    units = units_df.copy()
    units["layer"] = pd.array([entry["layer"]] * len(units), dtype="Int32")
    units["unit"] = units["unit"].astype("int32")
    units = units[
        ["site", "layer", "unit", *[c for c in units.columns if c not in ("site", "layer", "unit")]]
    ]
    ex_table = _exemplar_table(exemplars_df)
    units_table = pa.Table.from_pandas(units, preserve_index=False)

    with tempfile.TemporaryDirectory(prefix=".derived-", dir=path) as tmp:
        tmpdir = Path(tmp)
        new_units = _merge_table(path / fmt.UNITS, name, units_table, tmpdir)
        new_ex = _merge_table(path / fmt.EXEMPLARS, name, ex_table, tmpdir)
        os.replace(new_ex, path / fmt.EXEMPLARS)
        os.replace(new_units, path / fmt.UNITS)
    sites = [s for s in manifest["sites"] if s["name"] != name]
    sites.append(entry)
    manifest["sites"] = sites
    fmt.write_json_atomic(path / fmt.MANIFEST, manifest)
    return entry


def remove_site_units(atlas: Any, name: str) -> None:
    """Remove a derived site (its rows and its manifest entry); recorded sites are refused."""
    path = _path(atlas)
    manifest = fmt.read_manifest(path)
    entry = next((s for s in manifest["sites"] if s["name"] == name), None)
    if entry is None or "source" not in entry:
        raise AtlasError(f"{name!r} is not a derived site of the atlas at {str(path)!r}.")
    manifest["sites"] = [s for s in manifest["sites"] if s["name"] != name]
    fmt.write_json_atomic(path / fmt.MANIFEST, manifest)
    import duckdb

    for file in (fmt.UNITS, fmt.EXEMPLARS):
        target = path / file
        tmp = path / (file + ".tmp")
        con = duckdb.connect()
        try:
            q = str(target).replace("'", "''")
            con.execute(
                f"copy (select * from read_parquet('{q}') where site <> ?) to "
                f"'{str(tmp).replace(chr(39), chr(39) * 2)}' (format parquet, compression zstd)",
                [name],
            )
        finally:
            con.close()
        os.replace(tmp, target)
