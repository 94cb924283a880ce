"""The on-disk format of the activation store: names, dtypes, the manifest and atomic writes.

A store is a directory::

    store/
      store.json                 the manifest: the only source of truth (see docs/store.md)
      zarr.json                  a zarr v3 group, so zarr/xarray users can browse the arrays
      <array>/zarr.json          one zarr v3 array per site, dims (row, unit)
      <array>/c/<i>/<j>          chunk files: rows [i*chunk_rows, (i+1)*chunk_rows), unit chunk j
      index/rows-<a>-<b>.parquet (row, doc, pos, token_id) of rows [a, b)

Everything that is not named by ``store.json`` is garbage from an interrupted writer and is
never read.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuronatlas.errors import FormatVersionError, StoreCorruptedError, StoreError, closest

FORMAT_NAME = "neuronatlas.store"
FORMAT_VERSION = 1
MANIFEST = "store.json"
INDEX_DIR = "index"
CHECKSUM = "crc32"

# store dtype -> (zarr data type on disk, torch dtype of the values)
DTYPES: dict[str, tuple[str, torch.dtype]] = {
    "float32": ("float32", torch.float32),
    "float16": ("float16", torch.float16),
    # zarr v3 has no bfloat16: the 16-bit patterns are stored as uint16 (the upper half of the
    # float32 with the same value), see decode_numpy.
    "bfloat16": ("uint16", torch.bfloat16),
}
COMPRESSORS = (None, "zstd")
REQUIRED_KEYS = frozenset(
    [
        "sites",
        "chunk_rows",
        "compressor",
        "keep_fraction",
        "keep_seed",
        "n_rows",
        "complete",
        "cursor",
        "cursor_rows",
        "commits",
        "chunks",
        "index",
    ]
)


@dataclass(frozen=True)
class SiteInfo:
    """One site of a store: its name, its zarr array and how its values are laid out.

    Attributes:
        name: the site name (see docs/architecture.md), e.g. ``"transformer.h.0.mlp.c_proj:input"``.
        array: the zarr array's name inside the store directory (a filesystem-safe form of
            ``name``).
        n_units: number of units (columns).
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        unit_chunk: units per chunk file (``n_units`` unless chunked along units too).
    """

    name: str
    array: str
    n_units: int
    dtype: str
    unit_chunk: int

    @property
    def n_unit_chunks(self) -> int:
        return -(-self.n_units // self.unit_chunk)

    @property
    def zarr_dtype(self) -> str:
        return DTYPES[self.dtype][0]

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype][1]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "array": self.array,
            "n_units": self.n_units,
            "dtype": self.dtype,
            "zarr_dtype": self.zarr_dtype,
            "unit_chunk": self.unit_chunk,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SiteInfo:
        return cls(
            name=str(d["name"]),
            array=str(d["array"]),
            n_units=int(d["n_units"]),
            dtype=str(d["dtype"]),
            unit_chunk=int(d["unit_chunk"]),
        )


def check_dtype(dtype: str, what: str = "dtype") -> str:
    """Return ``dtype`` as a store dtype name, or raise with the valid names."""
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise StoreError(
            f"The {what} of an activation store must be one of {sorted(DTYPES)}. Got {dtype!r}"
            f"{did_you_mean(str(dtype), DTYPES)}."
        )
    return str(dtype)


def array_names(sites: list[str]) -> list[str]:
    """Filesystem-safe, unique zarr array names for site names (``:`` and ``/`` become ``_``)."""
    used = {INDEX_DIR, "c"}
    out = []
    for name in sites:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("_.") or "site"
        cand, i = base, 1
        while cand in used:
            cand, i = f"{base}_{i}", i + 1
        used.add(cand)
        out.append(cand)
    return out


def chunk_key(site: SiteInfo, row_chunk: int, unit_chunk: int) -> str:
    """The store-relative path of one chunk file (zarr v3 default chunk key encoding)."""
    return f"{site.array}/c/{row_chunk}/{unit_chunk}"


def index_file(start: int, stop: int) -> str:
    return f"{INDEX_DIR}/rows-{start:012d}-{stop:012d}.parquet"


# ---------------------------------------------------------------------------------------------
# dtype conversion between torch values and what the zarr arrays hold


def encode_numpy(values: torch.Tensor, dtype: str) -> np.ndarray:
    """``(n, unit)`` values (any float dtype, any device) -> numpy in the on-disk dtype.

    Rounding to float16 / bfloat16 is torch's (round to nearest even), done on the values' device
    before the copy to the host, so only the stored bytes cross the bus.
    """
    t = values.detach().to(DTYPES[dtype][1])
    if dtype == "bfloat16":
        return t.view(torch.int16).cpu().numpy().view(np.uint16)
    return t.cpu().numpy()


def decode_numpy(stored: np.ndarray, dtype: str, raw: bool = False) -> np.ndarray:
    """On-disk values -> numpy: float32/float16 as stored; bfloat16 widened exactly to float32.

    A bfloat16 ``b`` stored as the uint16 ``u`` is the float32 whose bit pattern is ``u << 16``.
    With ``raw=True`` the stored array is returned unchanged (uint16 bit patterns for bfloat16).
    """
    if dtype != "bfloat16" or raw:
        return stored
    return (stored.astype(np.uint32) << np.uint32(16)).view(np.float32)


def decode_torch(stored: np.ndarray, dtype: str) -> torch.Tensor:
    """On-disk values -> a CPU tensor in the store dtype (bfloat16 as ``torch.bfloat16``)."""
    if dtype == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(stored).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(stored)


# ---------------------------------------------------------------------------------------------
# durable files


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a directory (a directory's fsync makes renames inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that a kill at any instant leaves the old or the new file.

    The bytes go to a temporary file in the same directory, which is fsynced (when ``durable``),
    then renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows), and the directory
    is fsynced so the rename itself survives a power loss.
    """
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable and os.name == "posix":
        fsync_path(path.parent)


def crc32(data: Any) -> int:
    """CRC-32 (zlib) of a bytes-like object, as an unsigned int."""
    return zlib.crc32(data) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# the manifest


def read_manifest(root: Path) -> dict[str, Any]:
    """Read and validate ``root/store.json``.

    Raises:
        StoreError: no store there, or the file is not a store manifest.
        FormatVersionError: the store was written by another format version.
        StoreCorruptedError: the manifest cannot be parsed.
    """
    path = root / MANIFEST
    if not path.is_file():
        what = "does not exist" if not root.exists() else "has no store.json"
        raise StoreError(
            f"Expected an activation store at {str(root)!r} (a directory with {MANIFEST}), but it "
            f"{what}. Create one with ActivationStore.create(path, sites=...), or check the path."
        )
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise StoreCorruptedError(
            f"The manifest {str(path)!r} of the activation store cannot be read as JSON ({exc}). "
            "It is written atomically, so this is damage from outside; restore the store from a "
            "copy or write it again."
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise StoreError(
            f"Expected {str(path)!r} to be an activation store manifest (format "
            f"{FORMAT_NAME!r}); got format {got!r}. Point to the store directory itself."
        )
    version = manifest.get("version")
    if version == FORMAT_VERSION and not manifest.keys() >= REQUIRED_KEYS:
        raise StoreCorruptedError(
            f"The manifest {str(path)!r} lacks the keys "
            f"{sorted(REQUIRED_KEYS - manifest.keys())} of store format {FORMAT_VERSION}; it was "
            "edited or damaged. Restore the store from a copy, or write it again."
        )
    if version != FORMAT_VERSION:
        raise FormatVersionError(
            f"The activation store at {str(root)!r} was written in store format version "
            f"{version!r}; this neuronatlas reads version {FORMAT_VERSION}. "
            + (
                "Upgrade neuronatlas to read it."
                if isinstance(version, int) and version > FORMAT_VERSION
                else "Write the store again with this neuronatlas."
            )
        )
    return manifest


def write_manifest(root: Path, manifest: dict[str, Any], durable: bool = True) -> None:
    """Atomically replace ``root/store.json``: this is the commit point of every change."""
    data = json.dumps(manifest, separators=(",", ":"), allow_nan=False).encode()
    atomic_write(root / MANIFEST, data, durable=durable)


def did_you_mean(name: str, candidates: Any) -> str:
    """A ``" (did you mean 'x'?)"`` suffix for error messages, or ``""``."""
    found = closest(name, list(candidates), n=3)
    return f" (did you mean {', '.join(map(repr, found))}?)" if found else ""
