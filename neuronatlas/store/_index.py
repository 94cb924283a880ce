"""The row index of a store: ``(row, doc, pos, token_id)`` in Parquet parts, one per commit.

Each part covers a contiguous range of rows and is named after it
(``index/rows-<start>-<stop>.parquet``, 12-digit zero-padded), so plain tools read the whole
index with ``duckdb.sql("select * from 'store/index/*.parquet' order by row")``. The manifest
lists the committed parts with their CRC-32; a part it does not list is never read.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from neuronatlas.errors import StoreCorruptedError
from neuronatlas.store._format import atomic_write, crc32, index_file

SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("doc", pa.int64()),
        ("pos", pa.int32()),
        ("token_id", pa.int64()),
    ]
)


def write_part(
    root: Path, start: int, doc: np.ndarray, pos: np.ndarray, token_id: np.ndarray, durable: bool
) -> dict[str, Any]:
    """Write rows ``[start, start + len(doc))`` of the index; return the manifest entry."""
    stop = start + len(doc)
    table = pa.table(
        {
            "row": pa.array(np.arange(start, stop, dtype=np.int64)),
            "doc": pa.array(doc, pa.int64()),
            "pos": pa.array(pos, pa.int32()),
            "token_id": pa.array(token_id, pa.int64()),
        },
        schema=SCHEMA,
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue().to_pybytes()
    name = index_file(start, stop)
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(root / name, data, durable=durable)
    return {"file": name, "start": start, "stop": stop, "crc32": crc32(data), "nbytes": len(data)}


def read_part(root: Path, part: dict[str, Any], verify: bool = True) -> pa.Table:
    """Read one committed index part, checking its size and CRC-32 against the manifest."""
    path = root / part["file"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreCorruptedError(
            f"The activation store at {str(root)!r} is missing the committed index part "
            f"{part['file']!r} (rows {part['start']}..{part['stop'] - 1}). Restore the store "
            "from a copy, or write it again."
        ) from None
    if verify and (crc32(data), len(data)) != (part["crc32"], part["nbytes"]):
        raise StoreCorruptedError(
            f"The committed index part {part['file']!r} (rows {part['start']}.."
            f"{part['stop'] - 1}) of the activation store at {str(root)!r} is corrupted: "
            f"expected {part['nbytes']} bytes with crc32 {part['crc32']:#010x}, found "
            f"{len(data)} bytes with crc32 {crc32(data):#010x}. Restore the store from a copy, "
            "or write it again."
        )
    return pq.read_table(pa.BufferReader(data))


def read_rows(
    root: Path, parts: list[dict[str, Any]], start: int, stop: int, verify: bool = True
) -> pa.Table:
    """Rows ``[start, stop)`` of the index, reading only the parts that overlap them."""
    if stop <= start:
        return SCHEMA.empty_table()
    starts = [p["start"] for p in parts]
    first = max(bisect.bisect_right(starts, start) - 1, 0)
    tables = []
    for part in parts[first:]:
        if part["start"] >= stop:
            break
        t = read_part(root, part, verify)
        lo, hi = max(start, part["start"]), min(stop, part["stop"])
        tables.append(t.slice(lo - part["start"], hi - lo))
    return pa.concat_tables(tables).combine_chunks() if tables else SCHEMA.empty_table()
