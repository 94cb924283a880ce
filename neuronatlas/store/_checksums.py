"""Chunk checksums: recorded as zarr writes each chunk file, verified as zarr reads it back.

Both happen inside a :class:`zarr.storage.LocalStore` subclass, on the exact bytes that go to and
come from the file, so checksumming never reads a file a second time: a write costs one CRC-32
pass over bytes already in memory (several GB/s), a read the same.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import LocalStore

from neuronatlas.errors import StoreCorruptedError
from neuronatlas.store._format import SiteInfo, crc32


class Ledger:
    """The checksums of one store: committed ones (from the manifest) and freshly written ones.

    Args:
        sites: the store's sites.
        chunk_rows: rows per chunk.
        committed: ``{site name: [[crc32, nbytes], ...]}``, one entry per chunk file in
            (row chunk, unit chunk) order, as in the manifest.
    """

    def __init__(
        self, sites: list[SiteInfo], chunk_rows: int, committed: dict[str, list[list[int]]]
    ) -> None:
        self.chunk_rows = chunk_rows
        self.by_array = {s.array: s for s in sites}
        self.committed = {s.name: [tuple(e) for e in committed.get(s.name, [])] for s in sites}
        self.written: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def parse(self, key: str) -> tuple[SiteInfo, int, int] | None:
        """``"<array>/c/<i>/<j>"`` -> (site, row chunk i, unit chunk j); None for other keys."""
        parts = key.split("/")
        if len(parts) != 4 or parts[1] != "c" or parts[0] not in self.by_array:
            return None
        if not (parts[2].isdigit() and parts[3].isdigit()):
            return None
        return self.by_array[parts[0]], int(parts[2]), int(parts[3])

    def expected(self, key: str) -> tuple[int, int] | None:
        """The committed (crc32, nbytes) of a chunk file, or None if it is not committed."""
        parsed = self.parse(key)
        if parsed is None:
            return None
        site, i, j = parsed
        flat = i * site.n_unit_chunks + j
        entries = self.committed[site.name]
        return entries[flat] if flat < len(entries) else None

    def record(self, key: str, checksum: int, nbytes: int) -> None:
        with self._lock:
            self.written[key] = (checksum, nbytes)

    def take_written(self, key: str) -> tuple[int, int]:
        with self._lock:
            return self.written.pop(key)

    def check(self, root: Path, key: str, expected: tuple[int, int], data: Any) -> None:
        """Raise :class:`StoreCorruptedError` unless ``data`` (bytes or None) is the chunk."""
        if data is None:
            raise StoreCorruptedError(
                f"The activation store at {str(root)!r} is missing the committed "
                f"{self.describe(key)}. Restore the store from a copy, or write it again."
            )
        view = memoryview(data).cast("B")
        checksum = crc32(view)
        if (checksum, view.nbytes) != tuple(expected):
            raise StoreCorruptedError(
                f"The committed {self.describe(key)} of the activation store at {str(root)!r} is "
                f"corrupted: expected {expected[1]} bytes with crc32 {expected[0]:#010x}, found "
                f"{view.nbytes} bytes with crc32 {checksum:#010x}. The file was changed or "
                "damaged after it was committed; restore the store from a copy, or write it again."
            )

    def describe(self, key: str) -> str:
        parsed = self.parse(key)
        if parsed is None:
            return repr(key)
        site, i, j = parsed
        r0, u0 = i * self.chunk_rows, j * site.unit_chunk
        u1 = min(u0 + site.unit_chunk, site.n_units)
        return (
            f"chunk {key!r} of site {site.name!r} (rows {r0}..{r0 + self.chunk_rows - 1}, "
            f"units {u0}..{u1 - 1})"
        )


class ChecksumLocalStore(LocalStore):
    """A zarr ``LocalStore`` that checksums every chunk it writes and verifies every one it reads.

    Writes record ``(crc32, nbytes)`` of the encoded chunk in the :class:`Ledger`; reads of a
    committed chunk compare the file's bytes with the manifest's entry and raise
    :class:`~neuronatlas.errors.StoreCorruptedError` naming the site and the chunk (also when the
    file is missing). Other keys (zarr metadata) pass through unchanged.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        read_only: bool = False,
        ledger: Ledger,
        verify: bool = True,
    ) -> None:
        super().__init__(root, read_only=read_only)
        self.ledger = ledger
        self.verify = verify

    def with_read_only(self, read_only: bool = False) -> ChecksumLocalStore:
        return type(self)(self.root, read_only=read_only, ledger=self.ledger, verify=self.verify)

    async def set(self, key: str, value: Buffer) -> None:
        if self.ledger.parse(key) is not None:
            view = value.as_numpy_array()
            checksum = await asyncio.to_thread(crc32, view)
            await super().set(key, value)
            self.ledger.record(key, checksum, int(view.nbytes))
            return
        await super().set(key, value)

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        expected = self.ledger.expected(key) if self.verify else None
        if expected is None:
            return await super().get(key, prototype, byte_range)
        buf = await super().get(key, prototype, None)
        data = None if buf is None else buf.as_numpy_array()
        await asyncio.to_thread(self.ledger.check, self.root, key, expected, data)
        assert buf is not None  # check() raised otherwise
        return buf if byte_range is None else _slice(buf, byte_range)


def _slice(buf: Buffer, byte_range: Any) -> Buffer:
    n = len(buf)
    if isinstance(byte_range, RangeByteRequest):
        return buf[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return buf[byte_range.offset : n]
    if isinstance(byte_range, SuffixByteRequest):
        return buf[max(0, n - byte_range.suffix) : n]
    raise TypeError(f"Unexpected byte_range {byte_range!r}")
