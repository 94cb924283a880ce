"""The write side of the activation store: buffering, whole-chunk writes, commits and resume.

Rows are buffered per site until a whole chunk of ``chunk_rows`` rows is full; the chunk is then
handed to one background thread that writes it through zarr (so the producer's next forward pass
overlaps the disk write), with at most ``max_pending`` chunks in flight. Nothing a writer does
touches committed chunk files, committed index parts or any zarr metadata until ``close``; the
only file a commit replaces is ``store.json``, atomically. See docs/store.md for the protocol.
"""

from __future__ import annotations

import json
import weakref
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neuronatlas.errors import StoreError, StoreMismatchError
from neuronatlas.store import _index
from neuronatlas.store._format import (
    chunk_key,
    did_you_mean,
    encode_numpy,
    fsync_path,
    write_manifest,
)
from neuronatlas.store._subsample import subsample_mask

if TYPE_CHECKING:
    from neuronatlas.store._store import ActivationStore

# Index rows kept in memory before a part is written even without a commit (keeps memory flat
# for producers that commit rarely): 2**20 rows are 24 MiB.
INDEX_PART_ROWS = 1 << 20


class StoreWriter:
    """Append state of one open-for-append :class:`ActivationStore` (internal)."""

    def __init__(self, store: ActivationStore, durable: bool, max_pending: int) -> None:
        # a weak proxy: dropping an unclosed store frees it (and its writer lock) at once
        self.store: ActivationStore = weakref.proxy(store)
        self.durable = durable
        self.max_pending = max(int(max_pending), 0)
        m = store._manifest
        self.chunk_rows = store.chunk_rows
        self.committed = int(m["n_rows"])
        self.written = self.committed  # rows in chunks handed to zarr
        self.appended = int(m["cursor_rows"])  # rows of the producer's stream seen so far
        self.fill = 0  # rows in the current buffers
        self.pending_cursors: list[tuple[Any, int]] = []
        self.pending_index: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.index_stop = self.committed  # rows covered by index parts written so far
        self.new_parts: list[dict[str, Any]] = []
        self.inflight: deque[Future[dict[str, np.ndarray]]] = deque()
        self.free: list[dict[str, np.ndarray]] = []
        self.executor: ThreadPoolExecutor | None = None
        self.replay_start = self.appended  # re-sent rows [replay_start, committed) are dropped
        self.replay: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.failed: BaseException | None = None
        self.buf = self._new_buffers()
        self.idx = self._new_index_buffers()

    # -- buffers ---------------------------------------------------------------------------

    def _new_buffers(self) -> dict[str, np.ndarray]:
        if self.free:
            return self.free.pop()
        return {
            s.name: np.empty((self.chunk_rows, s.n_units), dtype=s.zarr_dtype)
            for s in self.store._sites
        }

    def _new_index_buffers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.empty(self.chunk_rows, np.int64),
            np.empty(self.chunk_rows, np.int32),
            np.empty(self.chunk_rows, np.int64),
        )

    # -- append ----------------------------------------------------------------------------

    def append(
        self,
        rows: Mapping[str, Any],
        doc: Any,
        pos: Any,
        token_id: Any = None,
        mask: Any = None,
    ) -> int:
        self._check_usable()
        sites = self.store._sites
        values, d, p, t = self._validate(rows, doc, pos, token_id, mask)
        keep = _flat_numpy(mask, bool) if mask is not None else None
        if self.store.keep_fraction < 1.0:
            sub = subsample_mask(d, p, self.store.keep_fraction, self.store.keep_seed)
            keep = sub if keep is None else keep & sub
        if keep is not None and not keep.all():
            sel = np.flatnonzero(keep)
            d, p, t = d[sel], p[sel], t[sel]
            values = {k: v[torch.from_numpy(sel).to(v.device)] for k, v in values.items()}
        k = len(d)
        skip = min(max(self.committed - self.appended, 0), k)
        if skip:
            self._check_replay(d[:skip], p[:skip], t[:skip])
        self.appended += k
        if skip == k:
            return k
        encoded = {s.name: encode_numpy(values[s.name][skip:], s.dtype) for s in sites}
        d, p, t = d[skip:], p[skip:], t[skip:]
        i, n = 0, len(d)
        while i < n:
            take = min(n - i, self.chunk_rows - self.fill)
            f = self.fill
            for s in sites:
                self.buf[s.name][f : f + take] = encoded[s.name][i : i + take]
            self.idx[0][f : f + take] = d[i : i + take]
            self.idx[1][f : f + take] = p[i : i + take]
            self.idx[2][f : f + take] = t[i : i + take]
            self.fill += take
            i += take
            if self.fill == self.chunk_rows:
                self._flush_chunk()
        return k

    def _validate(
        self, rows: Mapping[str, Any], doc: Any, pos: Any, token_id: Any, mask: Any
    ) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray, np.ndarray]:
        by_name = self.store._by_name
        if not isinstance(rows, Mapping):
            raise StoreError(
                "append(rows, ...) expects a mapping {site name: (n, unit) tensor}; got "
                f"{type(rows).__name__}."
            )
        unknown = [k for k in rows if k not in by_name]
        missing = [k for k in by_name if k not in rows]
        if unknown or missing:
            hint = "".join(f" {u!r}{did_you_mean(u, by_name)}" for u in unknown)
            raise StoreError(
                f"append needs rows for exactly the store's sites {list(by_name)}; "
                f"missing {missing}, unknown{hint or ' []'}. Pass one (n, unit) tensor per site."
            )
        d = _flat_numpy(doc, np.int64)
        p = _flat_numpy(pos, np.int64)
        t = np.full(d.shape, -1, np.int64) if token_id is None else _flat_numpy(token_id, np.int64)
        if not (len(d) == len(p) == len(t)):
            raise StoreError(
                f"append needs doc, pos and token_id of equal length (one per row); got "
                f"{len(d)}, {len(p)} and {len(t)}."
            )
        if len(p) and (p.min() < -(2**31) or p.max() >= 2**31):
            raise StoreError(
                f"Positions must fit in int32 (the index stores pos as int32); got values in "
                f"[{p.min()}, {p.max()}]."
            )
        values: dict[str, torch.Tensor] = {}
        for name, x in rows.items():
            site = by_name[name]
            v = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
            lead = v.shape[:-1] if v.dim() >= 1 else ()
            if v.dim() not in (2, 3) or v.shape[-1] != site.n_units:
                raise StoreError(
                    f"Rows of site {name!r} must be (n, unit) or (batch, pos, unit) with unit = "
                    f"{site.n_units}; got shape {tuple(v.shape)}."
                )
            if v.is_complex() or v.dtype == torch.bool:
                raise StoreError(f"Rows of site {name!r} must be real numbers; got {v.dtype}.")
            v = v.reshape(-1, site.n_units)
            if v.shape[0] != len(d):
                raise StoreError(
                    f"Site {name!r} has {v.shape[0]} rows (shape {tuple(lead)} x unit) but doc/pos "
                    f"have {len(d)} entries; pass one (doc, pos) per row, flattened alike."
                )
            values[name] = v
        if mask is not None and _numel(mask) != len(d):
            raise StoreError(
                f"mask must have one entry per row ({len(d)}); got {_numel(mask)} entries."
            )
        return values, d, p, t

    def _check_replay(self, d: np.ndarray, p: np.ndarray, t: np.ndarray) -> None:
        """Rows re-sent after a resume must be the committed ones (they are dropped)."""
        if self.replay is None:
            table = self.store.index(slice(self.replay_start, self.committed))
            rd, rp, rt = (table.column(c).to_numpy() for c in ("doc", "pos", "token_id"))
            self.replay = (rd, rp, rt)
        off = self.appended - self.replay_start
        rd, rp, rt = (a[off : off + len(d)] for a in self.replay)
        bad = np.flatnonzero((rd != d) | (rp != p) | (rt != t))
        if bad.size:
            b, row = int(bad[0]), self.appended + int(bad[0])
            raise StoreMismatchError(
                f"After resuming, the producer re-sent row {row} as (doc={d[b]}, pos={p[b]}, "
                f"token_id={t[b]}), but the store committed (doc={rd[b]}, pos={rp[b]}, "
                f"token_id={rt[b]}) there. A resumed producer must restart exactly at "
                f"store.cursor ({self.store.cursor!r}) and produce the same rows in the same order."
            )

    # -- chunk writes ----------------------------------------------------------------------

    def _flush_chunk(self) -> None:
        r0 = self.written
        bufs, self.buf = self.buf, self._new_buffers()
        self.pending_index.append(self.idx)
        self.idx = self._new_index_buffers()
        self.fill = 0
        self.written += self.chunk_rows
        self._submit(r0, bufs)
        if sum(len(x[0]) for x in self.pending_index) >= INDEX_PART_ROWS:
            self._write_index_part()

    def _submit(self, r0: int, bufs: dict[str, np.ndarray]) -> None:
        if self.executor is None:
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="neuronatlas-store")
        self.inflight.append(self.executor.submit(_write_chunk, self.store._arrays, r0, bufs))
        while len(self.inflight) > self.max_pending:
            self._wait_one()

    def _wait_one(self) -> None:
        fut = self.inflight.popleft()
        try:
            bufs = fut.result()
        except BaseException as exc:
            self.failed = exc
            raise StoreError(
                f"Writing a chunk of the activation store at {str(self.store.path)!r} failed "
                f"({type(exc).__name__}: {exc}). The store keeps its last commit ({self.committed}"
                " rows); fix the cause (e.g. free disk space) and resume from store.cursor."
            ) from exc
        if len(next(iter(bufs.values()))) == self.chunk_rows and len(self.free) < 2:
            self.free.append(bufs)

    def drain(self) -> None:
        while self.inflight:
            self._wait_one()

    def _write_index_part(self) -> None:
        if not self.pending_index:
            return
        d, p, t = (np.concatenate(c) for c in zip(*self.pending_index, strict=True))
        part = _index.write_part(self.store.path, self.index_stop, d, p, t, self.durable)
        self.new_parts.append(part)
        self.index_stop = part["stop"]
        self.pending_index = []

    # -- commit ----------------------------------------------------------------------------

    def commit(self, cursor: Any) -> int:
        self._check_usable()
        self.pending_cursors.append((_check_cursor(cursor), self.appended))
        self.drain()
        return self._commit(self.written, final=False)

    def close(self, cursor: Any) -> None:
        self._check_usable()
        if self.appended < self.committed:
            raise StoreError(
                f"close() after a resume needs the committed rows re-sent first: the store holds "
                f"{self.committed} rows but the producer re-sent only up to row {self.appended}. "
                f"Restart the producer at store.cursor ({self.store.cursor!r}) and run it to the "
                "end, or leave the store incomplete (do not call close)."
            )
        if cursor is not None or not self.pending_cursors:
            last = self.store.cursor if cursor is None else _check_cursor(cursor)
            self.pending_cursors.append((last, self.appended))
        else:  # the latest cursor passed to commit, moved to the end of the stream
            self.pending_cursors.append((self.pending_cursors[-1][0], self.appended))
        n_rows = self.written + self.fill
        if self.fill:
            f = self.fill
            for b in self.buf.values():  # full-size chunk: no read-modify-write of stale files
                b[f:] = 0
            self.pending_index.append(tuple(a[:f].copy() for a in self.idx))  # type: ignore[arg-type]
            self._submit(self.written, self.buf)
            self.written += f
            self.fill = 0
        self.drain()
        self._commit(n_rows, final=True)
        self.store._finalize_shapes(self.durable)
        self.shutdown()

    def _commit(self, n_rows: int, final: bool) -> int:
        store, m = self.store, self.store._manifest
        best = None
        for c, r in self.pending_cursors:
            if r <= n_rows:
                best = (c, r)
        if best is None:
            best = (m["cursor"], int(m["cursor_rows"]))
        if not final and n_rows == self.committed and best == (m["cursor"], m["cursor_rows"]):
            return self.committed
        cr = self.chunk_rows
        first, stop = self.committed // cr, -(-n_rows // cr)
        chunks = {name: list(entries) for name, entries in m["chunks"].items()}
        new_files = []
        for s in store._sites:
            for i in range(first, stop):
                for j in range(s.n_unit_chunks):
                    key = chunk_key(s, i, j)
                    chunks[s.name].append(list(store._ledger.take_written(key)))
                    new_files.append(key)
        if self.durable and new_files:
            root = store.path
            dirs = {str(root / k.rsplit("/", 1)[0]) for k in new_files}
            dirs |= {str(root / s.array / "c") for s in store._sites}
            for k in new_files:
                fsync_path(root / k)
            for dname in sorted(dirs):
                fsync_path(dname)
        self._write_index_part()
        manifest = dict(m)
        manifest.update(
            n_rows=n_rows,
            complete=final,
            cursor=best[0],
            cursor_rows=best[1],
            commits=int(m["commits"]) + 1,
            chunks=chunks,
            index=[*m["index"], *self.new_parts],
        )
        write_manifest(store.path, manifest, durable=self.durable)
        store._set_manifest(manifest)
        self.committed = n_rows
        self.new_parts = []
        self.pending_cursors = [(c, r) for c, r in self.pending_cursors if r > best[1]]
        return n_rows

    # -- lifecycle -------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self.failed is not None:
            raise StoreError(
                f"The writer of the activation store at {str(self.store.path)!r} failed earlier "
                f"({type(self.failed).__name__}: {self.failed}); open the store again with "
                "mode='a' and resume from store.cursor."
            )

    def shutdown(self, wait: bool = True) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=wait)
            self.executor = None
        self.inflight.clear()
        self.free = []


def _write_chunk(
    arrays: dict[str, Any], r0: int, bufs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Write one whole chunk of every site (runs in the writer thread)."""
    for name, b in bufs.items():
        arrays[name][r0 : r0 + len(b), :] = b
    return bufs


def _numel(x: Any) -> int:
    return int(x.numel()) if isinstance(x, torch.Tensor) else int(np.size(x))


def _flat_numpy(x: Any, dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).reshape(-1).astype(dtype, copy=False)


def _check_cursor(cursor: Any) -> Any:
    try:
        return json.loads(json.dumps(cursor, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"The cursor passed to commit must be JSON-serializable (e.g. "
            f'{{"batches_done": 12}}); got {cursor!r} ({exc}).'
        ) from exc
