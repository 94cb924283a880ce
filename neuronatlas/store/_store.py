"""The activation store: raw activations of many sites on disk, appended and read in chunks.

A store holds, for each site, one zarr v3 array of shape ``(row, unit)`` and, shared by all
sites, a Parquet index saying which ``(doc, pos, token_id)`` each row is. Writers append rows,
commit atomically and resume after a kill; readers read row/unit ranges, whole chunks, or
shuffled minibatches in bounded memory. The format is in docs/store.md.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
import zarr
import zarr.codecs
from zarr.core.buffer import default_buffer_prototype

import neuronatlas
from neuronatlas.errors import StoreError
from neuronatlas.store import _index
from neuronatlas.store._checksums import ChecksumLocalStore, Ledger
from neuronatlas.store._format import (
    CHECKSUM,
    COMPRESSORS,
    FORMAT_NAME,
    FORMAT_VERSION,
    INDEX_DIR,
    MANIFEST,
    SiteInfo,
    array_names,
    atomic_write,
    chunk_key,
    decode_numpy,
    did_you_mean,
    fsync_path,
    read_manifest,
    write_manifest,
)
from neuronatlas.store._subsample import check_keep_fraction
from neuronatlas.store._validate import (
    UNSET,
    acquire_writer_lock,
    check_dtypes,
    check_positive_int,
    check_settings,
    check_sites,
    prepare_directory,
    remove,
    selection,
)
from neuronatlas.store._writer import StoreWriter

# Arrays are created with this many rows, so appending never rewrites zarr metadata; the true
# row count lives in the manifest and close() shrinks the arrays' shape to it once.
CAPACITY_ROWS = 1 << 40


class ActivationStore:
    """Raw activations of several sites, ``(row, unit)`` per site, in one directory on disk.

    Create with :meth:`create` (or :meth:`open` with ``mode="a"``, which also creates), append
    rows with :meth:`append`, make them durable with :meth:`commit`, finish with :meth:`close`.
    Read with :meth:`read`, :meth:`index`, :meth:`iter_chunks` and :meth:`minibatches`.

    A row is one token (one ``(doc, pos)``); all sites share the rows. Only whole chunks of
    ``chunk_rows`` rows are written before :meth:`close`, and a commit makes the chunks written so
    far and the producer's ``cursor`` durable in one atomic manifest replace: a writer killed at
    any instant leaves a store that opens with exactly its last commit.

    Examples:
        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + "/acts"
        >>> store = ActivationStore.create(path, sites={"mlp.0": 4}, chunk_rows=2)
        >>> for b in range(3):
        ...     acts = torch.arange(12.0).reshape(3, 4) + 100 * b
        ...     _ = store.append({"mlp.0": acts}, doc=[b] * 3, pos=[0, 1, 2])
        ...     _ = store.commit({"batches_done": b + 1})
        >>> store.close()
        >>> store = ActivationStore.open(path)
        >>> store.n_rows, store.complete
        (9, True)
        >>> store.read("mlp.0", rows=slice(3, 5), units=slice(0, 2)).tolist()
        [[100.0, 101.0], [104.0, 105.0]]
        >>> store.index(slice(3, 5)).column("doc").to_pylist()
        [1, 1]
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: Literal["r", "a"] = "r",
        verify: bool = True,
        durable: bool = True,
        max_pending: int = 2,
    ) -> None:
        """Open an existing store; prefer :meth:`open`, which also creates in ``mode="a"``."""
        if mode not in ("r", "a"):
            raise StoreError(f"mode must be 'r' (read) or 'a' (append); got {mode!r}.")
        self._root = Path(path)
        self._mode = mode
        self._verify = verify
        manifest = read_manifest(self._root)
        self._sites = [SiteInfo.from_json(s) for s in manifest["sites"]]
        self._by_name = {s.name: s for s in self._sites}
        self._ledger = Ledger(self._sites, int(manifest["chunk_rows"]), manifest["chunks"])
        self._manifest = manifest
        self._writer: StoreWriter | None = None
        fd = acquire_writer_lock(self._root) if mode == "a" else None
        # released by close(), or when the store is dropped (an abandoned writer), or at exit
        self._lock = weakref.finalize(self, os.close, fd) if fd is not None else None
        if mode == "a" and not manifest["complete"]:
            self._clean_uncommitted()
        self._zstore = ChecksumLocalStore(
            self._root, read_only=(mode == "r"), ledger=self._ledger, verify=verify
        )
        self._arrays = {s.name: self._open_array(s) for s in self._sites}
        if mode == "a":
            if manifest["complete"]:
                self._finalize_shapes(durable)
                self._release_lock()
            else:
                self._writer = StoreWriter(self, durable=durable, max_pending=max_pending)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        sites: Mapping[str, int],
        *,
        dtype: str | Mapping[str, str] = "float32",
        chunk_rows: int = 4096,
        unit_chunk: int | None = None,
        compressor: str | None = None,
        keep_fraction: float = 1.0,
        keep_seed: int = 0,
        overwrite: bool = False,
        durable: bool = True,
        max_pending: int = 2,
    ) -> ActivationStore:
        """Create an empty store at ``path`` and open it for appending.

        Args:
            path: the store directory (created; must not hold anything else).
            sites: ``{site name: n_units}``, in the order the store lists them.
            dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (one for all sites, or a
                mapping per site). Values are rounded to it on append (round to nearest even).
            chunk_rows: rows per chunk file (and per commit granule). ``4096`` rows of 1536
                float32 units are 24 MiB per chunk.
            unit_chunk: units per chunk file; ``None`` puts all units of a row in one file.
            compressor: ``None`` (raw bytes, fastest) or ``"zstd"`` (smaller for fp16/bf16).
            keep_fraction: keep this fraction of tokens, chosen by hashing ``(doc, pos)``
                (:func:`subsample_mask`), so resumes and shards keep the same tokens.
            keep_seed: seed of that subsample.
            overwrite: replace an existing store at ``path`` (never a non-store directory).
            durable: fsync chunk files, index parts and the manifest on each commit, so commits
                survive a power loss too (a killed process loses nothing committed either way).
            max_pending: chunks written in the background while the producer continues.

        Raises:
            StoreError: bad settings, or ``path`` already holds a store (and not ``overwrite``)
                or other files.
        """
        root = Path(path)
        names = check_sites(sites)
        dtypes = check_dtypes(dtype, names)
        chunk_rows = check_positive_int(chunk_rows, "chunk_rows")
        if unit_chunk is not None:
            unit_chunk = check_positive_int(unit_chunk, "unit_chunk")
        if compressor not in COMPRESSORS:
            raise StoreError(
                f"compressor must be one of {list(COMPRESSORS)}; got {compressor!r}"
                f"{did_you_mean(str(compressor), ['zstd'])}."
            )
        keep_fraction = check_keep_fraction(keep_fraction)
        prepare_directory(root, overwrite)

        infos = [
            SiteInfo(
                name=name,
                array=arr,
                n_units=int(sites[name]),
                dtype=dtypes[name],
                unit_chunk=min(unit_chunk or int(sites[name]), int(sites[name])),
            )
            for name, arr in zip(names, array_names(names), strict=True)
        ]
        zstore = zarr.storage.LocalStore(root)
        zarr.create_group(
            store=zstore,
            attributes={"neuronatlas": {"format": FORMAT_NAME, "manifest": MANIFEST}},
        )
        codecs = [zarr.codecs.ZstdCodec(level=3)] if compressor == "zstd" else None
        for s in infos:
            attrs: dict[str, Any] = {"site": s.name, "dtype": s.dtype}
            if s.dtype == "bfloat16":
                attrs["encoding"] = "bfloat16 bit patterns: float32 bits = uint16 << 16"
            zarr.create_array(
                store=zstore,
                name=s.array,
                shape=(CAPACITY_ROWS, s.n_units),
                chunks=(chunk_rows, s.unit_chunk),
                dtype=s.zarr_dtype,
                fill_value=0,
                compressors=codecs,
                dimension_names=("row", "unit"),
                attributes=attrs,
                config={"write_empty_chunks": True},
            )
        (root / INDEX_DIR).mkdir(exist_ok=True)
        if durable:
            for s in infos:
                fsync_path(root / s.array / "zarr.json")
                fsync_path(root / s.array)
            fsync_path(root / "zarr.json")
            fsync_path(root)
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "writer": f"neuronatlas {neuronatlas.__version__}",
            "sites": [s.to_json() for s in infos],
            "chunk_rows": chunk_rows,
            "compressor": compressor,
            "keep_fraction": keep_fraction,
            "keep_seed": int(keep_seed),
            "checksum": CHECKSUM,
            "n_rows": 0,
            "complete": False,
            "cursor": None,
            "cursor_rows": 0,
            "commits": 0,
            "chunks": {s.name: [] for s in infos},
            "index": [],
        }
        write_manifest(root, manifest, durable=durable)
        return cls(root, mode="a", durable=durable, max_pending=max_pending)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        mode: Literal["r", "a"] = "r",
        *,
        sites: Mapping[str, int] | None = None,
        dtype: str | Mapping[str, str] | None = None,
        chunk_rows: int | None = None,
        unit_chunk: int | None = None,
        compressor: str | None = UNSET,
        keep_fraction: float | None = None,
        keep_seed: int | None = None,
        verify: bool = True,
        durable: bool = True,
        max_pending: int = 2,
    ) -> ActivationStore:
        """Open a store for reading (``"r"``) or appending (``"a"``, resuming a writer).

        With ``mode="a"``, every setting given is checked against the store (a producer passes
        what it would create the store with); a store that does not exist yet is created with
        them, so one call serves the first run and every resumed one.

        Args:
            path: the store directory.
            mode: ``"r"`` or ``"a"``.
            sites, dtype, chunk_rows, unit_chunk, compressor, keep_fraction, keep_seed: as in
                :meth:`create`; ``None`` (unset) accepts what the store holds.
            verify: check every chunk's CRC-32 as it is read (a few ms per 24 MiB chunk).
            durable, max_pending: as in :meth:`create` (writers only).

        Raises:
            StoreError: no store at ``path`` (for ``"r"``, or ``"a"`` without ``sites``).
            StoreMismatchError: ``mode="a"`` with settings other than the store's.
            FormatVersionError: the store was written in another format version.
        """
        root = Path(path)
        if mode == "a" and not (root / MANIFEST).is_file() and sites is not None:
            return cls.create(
                root,
                sites,
                dtype=dtype if dtype is not None else "float32",
                chunk_rows=chunk_rows if chunk_rows is not None else 4096,
                unit_chunk=unit_chunk,
                compressor=None if compressor is UNSET else compressor,
                keep_fraction=keep_fraction if keep_fraction is not None else 1.0,
                keep_seed=keep_seed if keep_seed is not None else 0,
                durable=durable,
                max_pending=max_pending,
            )
        if mode == "a":
            check_settings(
                root,
                read_manifest(root),
                sites=sites,
                dtype=dtype,
                chunk_rows=chunk_rows,
                unit_chunk=unit_chunk,
                compressor=compressor,
                keep_fraction=keep_fraction,
                keep_seed=keep_seed,
            )
        return cls(root, mode=mode, verify=verify, durable=durable, max_pending=max_pending)

    # -- properties ------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The store directory."""
        return self._root

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def sites(self) -> dict[str, int]:
        """``{site name: n_units}`` in store order."""
        return {s.name: s.n_units for s in self._sites}

    @property
    def site_info(self) -> list[SiteInfo]:
        """Per-site layout: array name, dtype, unit chunking."""
        return list(self._sites)

    @property
    def dtype(self) -> str | dict[str, str]:
        """The store dtype (``"float32"``, ``"float16"``, ``"bfloat16"``), or one per site."""
        dtypes = {s.name: s.dtype for s in self._sites}
        values = set(dtypes.values())
        return values.pop() if len(values) == 1 else dtypes

    @property
    def chunk_rows(self) -> int:
        return int(self._manifest["chunk_rows"])

    @property
    def n_rows(self) -> int:
        """Committed rows: what readers see and what survives a kill."""
        return int(self._manifest["n_rows"])

    @property
    def cursor(self) -> Any:
        """The producer cursor of the last commit (``None`` before the first).

        It marks the producer's position after ``cursor_rows`` rows; a resumed producer restarts
        there. See docs/store.md, "Resuming a producer".
        """
        return self._manifest["cursor"]

    @property
    def cursor_rows(self) -> int:
        """Rows the producer had appended at :attr:`cursor` (``<= n_rows``)."""
        return int(self._manifest["cursor_rows"])

    @property
    def complete(self) -> bool:
        """True once :meth:`close` finished: the store is final and read-only."""
        return bool(self._manifest["complete"])

    @property
    def keep_fraction(self) -> float:
        return float(self._manifest["keep_fraction"])

    @property
    def keep_seed(self) -> int:
        return int(self._manifest["keep_seed"])

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the last committed manifest (``store.json``)."""
        return dict(self._manifest)

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{self._manifest['commits']} commits"
        return (
            f"ActivationStore({str(self._root)!r}, mode={self._mode!r}, n_rows={self.n_rows}, "
            f"sites={len(self._sites)}, dtype={self.dtype!r}, {state})"
        )

    # -- writing ---------------------------------------------------------------------------

    def append(
        self,
        rows: Mapping[str, Any],
        doc: Any,
        pos: Any,
        token_id: Any = None,
        *,
        mask: Any = None,
    ) -> int:
        """Append rows (one per token) for every site.

        Args:
            rows: ``{site: (n, unit)}`` tensors or arrays (any float dtype, any device), or
                ``(batch, pos, unit)`` together with ``mask``; every site of the store, same n.
            doc: ``(n,)`` (or ``(batch, pos)``) document id of each row.
            pos: same shape, position of each row within its document.
            token_id: same shape, or ``None`` (stored as ``-1``).
            mask: optional ``(n,)`` / ``(batch, pos)`` bool, True for rows to keep (e.g. the
                batch's padding mask). ``keep_fraction`` subsampling applies on top.

        Returns:
            The number of rows kept (after ``mask`` and subsampling).

        Raises:
            StoreError: the store is not open for appending, or rows/doc/pos do not fit.
            StoreMismatchError: after a resume, re-sent rows differ from the committed ones.
        """
        return self._require_writer("append").append(rows, doc, pos, token_id, mask)

    def commit(self, cursor: Any = None) -> int:
        """Make every whole chunk appended so far durable, with the producer's cursor.

        ``cursor`` is any JSON-able value saying where the producer is after the rows appended
        so far (e.g. ``{"batches_done": 12}``). Rows still buffered (less than a whole chunk) are
        not written; the manifest therefore records the latest cursor whose rows are all
        committed (:attr:`cursor`, :attr:`cursor_rows`). A resumed producer restarts there and
        re-sends the few committed rows after it, which :meth:`append` checks and drops.

        Returns:
            :attr:`n_rows` after the commit.
        """
        return self._require_writer("commit").commit(cursor)

    def close(self, cursor: Any = None) -> None:
        """Write the last partial chunk, commit, mark the store complete, release the writer.

        Closing a reader, or a complete store, only releases resources. After ``close`` the
        arrays' zarr shape is exactly ``(n_rows, unit)``.
        """
        if self._writer is not None:
            writer = self._writer
            writer.close(cursor)
            self._writer = None
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock()
            self._lock = None

    def __enter__(self) -> ActivationStore:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Close on success; on an exception leave the last commit as is (resumable)."""
        if exc_type is None:
            self.close()
        else:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
            self._release_lock()

    def _require_writer(self, what: str) -> StoreWriter:
        if self._writer is None:
            why = (
                "it is complete (closed); create a new store to write more"
                if self.complete
                else "it was opened for reading; open it with mode='a'"
            )
            raise StoreError(
                f"Cannot {what} to the activation store at {str(self._root)!r}: {why}."
            )
        return self._writer

    def _set_manifest(self, manifest: dict[str, Any]) -> None:
        self._manifest = manifest
        self._ledger.committed = {
            name: [tuple(e) for e in entries] for name, entries in manifest["chunks"].items()
        }

    def _finalize_shapes(self, durable: bool) -> None:
        """Shrink each array's zarr shape to ``(n_rows, unit)`` (atomic metadata rewrite)."""
        n = self.n_rows
        for s in self._sites:
            arr = self._arrays[s.name]
            if arr.shape[0] == n:
                continue
            meta = arr.metadata.update_shape((n, s.n_units))
            data = meta.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes()
            atomic_write(self._root / s.array / "zarr.json", data, durable=durable)
            self._arrays[s.name] = self._open_array(s)

    def _open_array(self, site: SiteInfo) -> zarr.Array:
        arr = zarr.open_array(
            store=self._zstore, path=site.array, mode="r" if self._mode == "r" else "r+"
        )
        # an all-zero chunk must still be a file: every committed chunk has a checksum
        return arr.with_config({"write_empty_chunks": True})

    def _clean_uncommitted(self) -> None:
        """Remove what an interrupted writer left beyond the last commit (never read anyway)."""
        n_chunks = -(-self.n_rows // self.chunk_rows)
        for s in self._sites:
            cdir = self._root / s.array / "c"
            if cdir.is_dir():
                for entry in os.scandir(cdir):
                    if not entry.name.isdigit() or int(entry.name) >= n_chunks:
                        remove(Path(entry.path))
            for entry in (self._root / s.array).glob("*.partial"):
                remove(entry)
        listed = {Path(p["file"]).name for p in self._manifest["index"]}
        idir = self._root / INDEX_DIR
        if idir.is_dir():
            for entry in os.scandir(idir):
                if entry.name not in listed:
                    remove(Path(entry.path))
        for entry in self._root.glob(f"{MANIFEST}.tmp-*"):
            remove(entry)

    # -- reading ---------------------------------------------------------------------------

    def _site(self, site: str) -> SiteInfo:
        info = self._by_name.get(site)
        if info is None:
            raise StoreError(
                f"The activation store has no site {site!r}{did_you_mean(site, self._by_name)}. "
                f"It holds: {list(self._by_name)}."
            )
        return info

    def read(
        self,
        site: str,
        rows: slice | Any | None = None,
        units: slice | Any | None = None,
        *,
        raw: bool = False,
    ) -> np.ndarray:
        """Read ``(row, unit)`` values of one site; only the chunks that hold them are read.

        Args:
            site: a site name of the store.
            rows: a slice (numpy semantics, clipped to :attr:`n_rows`) or integer row indices.
            units: a slice or integer unit indices.
            raw: return bfloat16 as its stored uint16 bit patterns instead of float32.

        Returns:
            ``(row, unit)`` numpy array: float32 / float16 as stored; bfloat16 widened exactly
            to float32 (or uint16 with ``raw=True``).

        Raises:
            StoreError: unknown site or out-of-range indices.
            StoreCorruptedError: a chunk read fails its checksum or is missing.
        """
        info = self._site(site)
        r = selection(rows, self.n_rows, "rows")
        u = selection(units, info.n_units, "units")
        arr = self._arrays[site]
        if isinstance(r, slice) and isinstance(u, slice):
            out = arr[r, u]
        else:
            out = arr.get_orthogonal_selection((r, u))
        return decode_numpy(np.asarray(out), info.dtype, raw=raw)

    def index(self, rows: slice | Any | None = None) -> pa.Table:
        """The ``row, doc, pos, token_id`` of committed rows, as a pyarrow Table.

        ``rows`` is a slice or integer row indices (as in :meth:`read`); ``.to_pandas()`` gives
        a DataFrame. Only the index parts that hold those rows are read.
        """
        r = selection(rows, self.n_rows, "rows")
        parts = self._manifest["index"]
        if isinstance(r, slice):
            if r.step == 1:
                return _index.read_rows(self._root, parts, r.start, r.stop, self._verify)
            r = np.arange(r.start, r.stop, r.step)
        if len(r) == 0:
            return _index.SCHEMA.empty_table()
        lo, hi = int(r.min()), int(r.max()) + 1
        table = _index.read_rows(self._root, parts, lo, hi, self._verify)
        return table.take(pa.array(r - lo))

    def iter_chunks(
        self, site: str, units: slice | Any | None = None, *, raw: bool = False
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(rows, values)`` chunk by chunk, in row order; ``values`` is ``(row, unit)``.

        Memory holds one chunk at a time. Values are decoded as in :meth:`read`.
        """
        info = self._site(site)
        u = selection(units, info.n_units, "units")
        for i in range(self.n_chunks):
            rows = self.chunk_slice(i)
            yield rows, decode_numpy(self._read_stored(site, rows, u), info.dtype, raw=raw)

    @property
    def n_chunks(self) -> int:
        """Row chunks holding committed rows (the last one may be partial once complete)."""
        return -(-self.n_rows // self.chunk_rows)

    def chunk_slice(self, i: int) -> slice:
        """The rows of row chunk ``i``, clipped to :attr:`n_rows`."""
        start = i * self.chunk_rows
        return slice(start, min(start + self.chunk_rows, self.n_rows))

    def _read_stored(self, site: str, rows: slice, units: Any) -> np.ndarray:
        arr = self._arrays[site]
        if isinstance(units, slice):
            return np.asarray(arr[rows, units])
        return np.asarray(arr.get_orthogonal_selection((rows, units)))

    def minibatches(
        self,
        site: str,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        epochs: int = 1,
        units: slice | Any | None = None,
        buffer_chunks: int = 4,
        drop_last: bool = False,
        shard: tuple[int, int] | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield ``(batch, unit)`` tensors for training, reading chunk by chunk.

        See :func:`neuronatlas.store.minibatches` for the algorithm and its guarantees.
        """
        from neuronatlas.store._minibatch import minibatches

        return minibatches(
            self,
            site,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            epochs=epochs,
            units=units,
            buffer_chunks=buffer_chunks,
            drop_last=drop_last,
            shard=shard,
            dtype=dtype,
            device=device,
        )

    def verify(self) -> int:
        """Check every committed chunk file and index part against its CRC-32.

        Returns:
            The number of files checked.

        Raises:
            StoreCorruptedError: naming the first file that is missing, truncated or changed.
        """
        n = 0
        for s in self._sites:
            for i in range(self.n_chunks):
                for j in range(s.n_unit_chunks):
                    key = chunk_key(s, i, j)
                    expected = self._ledger.expected(key)
                    path = self._root / key
                    data = path.read_bytes() if path.is_file() else None
                    self._ledger.check(self._root, key, expected, data)  # type: ignore[arg-type]
                    n += 1
        for part in self._manifest["index"]:
            _index.read_part(self._root, part, verify=True)
            n += 1
        return n
