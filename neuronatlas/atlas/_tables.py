"""Writing the atlas tables: token and doc parts during the pass, then units and exemplars.

Everything streams: token rows are written in parts at each checkpoint, sorted into
``tokens.parquet`` by DuckDB (out of core), and exemplars and units are written site by site.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch import nn

from neuronatlas.atlas import _format as fmt
from neuronatlas.sites import Site

if TYPE_CHECKING:
    from neuronatlas.units import SiteStats

TOKEN_SCHEMA = pa.schema(
    [
        ("doc", pa.int64()),
        ("pos", pa.int32()),
        ("token_id", pa.int64()),
        ("token", pa.string()),
        ("text", pa.string()),
    ]
)
DOC_SCHEMA = pa.schema(
    [
        ("doc", pa.int64()),
        ("source", pa.string()),
        ("source_offset", pa.int64()),
        ("n_tokens", pa.int32()),
    ]
)


def tokens_rows(windows: Iterable[Any]) -> pa.RecordBatch:
    docs, poss, ids, toks, texts = [], [], [], [], []
    for w in windows:
        n = len(w.token_ids)
        docs.append(np.full(n, w.doc, dtype=np.int64))
        poss.append(np.arange(n, dtype=np.int32))
        ids.append(np.asarray(w.token_ids, dtype=np.int64))
        toks.extend(w.tokens)
        texts.extend(w.text)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.concatenate(docs)),
            pa.array(np.concatenate(poss)),
            pa.array(np.concatenate(ids)),
            pa.array(toks, pa.string()),
            pa.array(texts, pa.string()),
        ],
        schema=TOKEN_SCHEMA,
    )


def docs_rows(windows: Iterable[Any]) -> pa.RecordBatch:
    ws = list(windows)
    return pa.RecordBatch.from_arrays(
        [
            pa.array([w.doc for w in ws], pa.int64()),
            pa.array([w.source for w in ws], pa.string()),
            pa.array([w.source_offset for w in ws], pa.int64()),
            pa.array([len(w.token_ids) for w in ws], pa.int32()),
        ],
        schema=DOC_SCHEMA,
    )


def tokens_from_ids(batch: Any, tok: Any) -> pa.RecordBatch:
    """Token rows of a tensor batch that carries ``input_ids`` (plain modules fed tokens)."""
    mask = batch.mask.reshape(-1).cpu()
    ids = batch.token_id.reshape(-1).cpu()[mask].numpy()
    toks = tok.convert_ids_to_tokens(ids.tolist()) if tok is not None else [str(i) for i in ids]
    return pa.RecordBatch.from_arrays(
        [
            pa.array(batch.doc.reshape(-1).cpu()[mask].numpy()),
            pa.array(batch.pos.reshape(-1).cpu()[mask].numpy().astype(np.int32)),
            pa.array(ids),
            pa.array(toks, pa.string()),
            pa.array(toks, pa.string()),
        ],
        schema=TOKEN_SCHEMA,
    )


def write_tables(
    out: Path, partial: Path, sites: list[Site], stats: dict[str, SiteStats], parts: list[str]
) -> dict[str, dict[str, int]]:
    """Write tokens, docs, exemplars and units; return the non-finite counts per site.

    ``parts`` names the token and doc part files of ``partial`` written during the pass.
    """
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("set preserve_insertion_order = false")
        for kind, order in (("tokens", "doc, pos"), ("docs", "doc")):
            files = [str(partial / p) for p in parts if p.startswith(kind + "-")]
            target = out / fmt.TABLES[kind]
            if files:
                con.execute(
                    f"copy (select * from read_parquet(?) order by {order}) to '{_q(target)}' "
                    "(format parquet, compression zstd, row_group_size 65536)",
                    [files],
                )
            else:
                pq.write_table(
                    (TOKEN_SCHEMA if kind == "tokens" else DOC_SCHEMA).empty_table(), target
                )

        # exemplars, then units (which take their top token from the exemplars)
        ex_tmp, units_tmp = partial / "exemplars-raw.parquet", partial / "units-raw.parquet"
        nonfinite: dict[str, dict[str, int]] = {}
        with (
            pq.ParquetWriter(ex_tmp, _EXEMPLAR_RAW_SCHEMA) as ex_w,
            pq.ParquetWriter(units_tmp, _units_raw_schema(stats, sites)) as u_w,
        ):
            for ordinal, site in enumerate(sites):
                acc = stats[site.name]
                ex_w.write_table(_exemplar_table(site.name, ordinal, acc.exemplars()))
                cols = acc.result()
                u_w.write_table(_units_table(site, ordinal, cols, u_w.schema))
                nonfinite[site.name] = {
                    k: int(np.sum(cols[k])) for k in ("n_nan", "n_posinf", "n_neginf") if k in cols
                }
        con.execute(
            f"copy (select e.site, e.unit, e.rank, e.activation, e.doc, e.pos, t.token_id, t.token, "
            f"e.ctx_start, e.ctx_acts from read_parquet('{_q(ex_tmp)}') e "
            f"left join read_parquet('{_q(out / fmt.TOKENS)}') t on t.doc = e.doc and t.pos = e.pos "
            f"order by e._ord, e.unit, e.rank) to '{_q(out / fmt.EXEMPLARS)}' "
            "(format parquet, compression zstd)"
        )
        con.execute(
            f"copy (select u.* exclude (_ord), e.token as top_token "
            f"from read_parquet('{_q(units_tmp)}') u left join "
            f"(select site, unit, token from read_parquet('{_q(out / fmt.EXEMPLARS)}') where rank = 0) e "
            f"on e.site = u.site and e.unit = u.unit order by u._ord, u.unit) "
            f"to '{_q(out / fmt.UNITS)}' (format parquet, compression zstd)"
        )
    finally:
        con.close()
    return nonfinite


_EXEMPLAR_RAW_SCHEMA = pa.schema(
    [
        ("site", pa.string()),
        ("_ord", pa.int32()),
        ("unit", pa.int32()),
        ("rank", pa.int32()),
        ("activation", pa.float32()),
        ("doc", pa.int64()),
        ("pos", pa.int32()),
        ("ctx_start", pa.int32()),
        ("ctx_acts", pa.list_(pa.float32())),
    ]
)


def _exemplar_table(site: str, ordinal: int, ex: dict[str, np.ndarray]) -> pa.Table:
    n = len(ex["unit"])
    ctx = np.asarray(ex["ctx_acts"], dtype=np.float32).reshape(n, -1)
    width = ctx.shape[1]
    ctx_arr = pa.ListArray.from_arrays(
        pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32)), pa.array(ctx.reshape(-1))
    )
    return pa.table(
        {
            "site": pa.array([site] * n, pa.string()),
            "_ord": pa.array(np.full(n, ordinal, dtype=np.int32)),
            "unit": pa.array(np.asarray(ex["unit"], dtype=np.int32)),
            "rank": pa.array(np.asarray(ex["rank"], dtype=np.int32)),
            "activation": pa.array(np.asarray(ex["activation"], dtype=np.float32)),
            "doc": pa.array(np.asarray(ex["doc"], dtype=np.int64)),
            "pos": pa.array(np.asarray(ex["pos"], dtype=np.int32)),
            "ctx_start": pa.array(np.asarray(ex["ctx_start"], dtype=np.int32)),
            "ctx_acts": ctx_arr,
        },
        schema=_EXEMPLAR_RAW_SCHEMA,
    )


def _units_raw_schema(stats: dict[str, SiteStats], sites: list[Site]) -> pa.Schema:
    cols = stats[sites[0].name].result()
    fields = [
        ("site", pa.string()),
        ("_ord", pa.int32()),
        ("layer", pa.int32()),
        ("unit", pa.int32()),
    ]
    for name, values in cols.items():
        arr = np.asarray(values)
        if arr.ndim == 2:
            fields.append((name, pa.list_(pa.from_numpy_dtype(arr.dtype))))
        else:
            fields.append((name, pa.from_numpy_dtype(arr.dtype)))
    return pa.schema(fields)


def _units_table(
    site: Site, ordinal: int, cols: dict[str, np.ndarray], schema: pa.Schema
) -> pa.Table:
    n = len(next(iter(cols.values())))
    arrays: dict[str, Any] = {
        "site": pa.array([site.name] * n, pa.string()),
        "_ord": pa.array(np.full(n, ordinal, dtype=np.int32)),
        "layer": pa.array([site.layer] * n, pa.int32()),
        "unit": pa.array(np.arange(n, dtype=np.int32)),
    }
    for name, values in cols.items():
        arr = np.asarray(values)
        if arr.ndim == 2:
            width = arr.shape[1]
            arrays[name] = pa.ListArray.from_arrays(
                pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32)),
                pa.array(arr.reshape(-1)),
            )
        else:
            arrays[name] = pa.array(arr)
    return pa.table(arrays, schema=schema)


def label_units_table(
    out: Path, model: nn.Module, sites: list[Site], tok: Any, thresholds: dict[str, float] | None
) -> dict[str, Any]:
    """Name the detected tokens, add the ``label_*`` columns and any vocabulary projection."""
    import pandas as pd

    from neuronatlas.units import annotate_units

    units, info = annotate_units(
        pd.read_parquet(out / fmt.UNITS),
        model=model,
        sites=sites,
        tokenizer=tok,
        thresholds=thresholds,
    )
    tmp = out / (fmt.UNITS + ".tmp")
    units.to_parquet(tmp, index=False, compression="zstd")
    os.replace(tmp, out / fmt.UNITS)
    return info


def corpus_summary(out: Path) -> dict[str, Any]:
    """Token and doc counts and a sha256 of the token ids in (doc, pos) order."""
    h = hashlib.sha256()
    n_tokens = 0
    pf = pq.ParquetFile(out / fmt.TOKENS)
    for rb in pf.iter_batches(batch_size=1 << 16, columns=["doc", "token_id"]):
        h.update(rb.column(0).to_numpy().tobytes())
        h.update(rb.column(1).to_numpy().tobytes())
        n_tokens += rb.num_rows
    n_docs = pq.ParquetFile(out / fmt.DOCS).metadata.num_rows
    return {"sha256": h.hexdigest(), "n_tokens": n_tokens, "n_docs": n_docs}


def _q(path: Path) -> str:
    return str(path).replace("'", "''")
