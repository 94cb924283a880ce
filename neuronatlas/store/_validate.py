"""Checks of user input and of directories for the activation store (internal)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuronatlas.errors import StoreError, StoreMismatchError
from neuronatlas.store._format import FORMAT_NAME, MANIFEST, check_dtype, read_manifest


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def is_unfinished_create(root: Path) -> bool:
    """A directory where :meth:`ActivationStore.create` was interrupted before its first commit."""
    if (root / MANIFEST).exists() or not (root / "zarr.json").is_file():
        return False
    try:
        attrs = json.loads((root / "zarr.json").read_bytes()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return attrs.get("neuronatlas", {}).get("format") == FORMAT_NAME


def prepare_directory(root: Path, overwrite: bool) -> None:
    if (root / MANIFEST).exists():
        if not overwrite:
            raise StoreError(
                f"An activation store already exists at {str(root)!r}. Open it with "
                "ActivationStore.open(path, mode='a') to resume writing, pass overwrite=True to "
                "replace it, or choose another path."
            )
        read_manifest(root)  # only ever delete what is a store
        shutil.rmtree(root)
    elif root.exists():
        if not root.is_dir():
            raise StoreError(f"Expected a directory path for the store; {str(root)!r} is a file.")
        if any(root.iterdir()):
            if not is_unfinished_create(root):
                raise StoreError(
                    f"The directory {str(root)!r} is not empty and is not an activation store; "
                    "refusing to write into it. Choose a new or empty directory."
                )
            shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)


def check_positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise StoreError(f"{what} must be a positive int; got {value!r}.")
    return int(value)


def check_sites(sites: Any) -> list[str]:
    if not isinstance(sites, Mapping) or not sites:
        raise StoreError(
            "sites must be a non-empty mapping {site name: n_units}, e.g. "
            f"{{'transformer.h.0.mlp.c_proj:input': 3072}}; got {sites!r}."
        )
    for name, n in sites.items():
        if not isinstance(name, str) or not name:
            raise StoreError(f"Site names must be non-empty strings; got {name!r}.")
        check_positive_int(n, f"n_units of site {name!r}")
    return list(sites)


def check_dtypes(dtype: Any, names: list[str]) -> dict[str, str]:
    if isinstance(dtype, Mapping):
        extra = [k for k in dtype if k not in names]
        missing = [k for k in names if k not in dtype]
        if extra or missing:
            raise StoreError(
                f"A per-site dtype mapping must name every site exactly; missing {missing}, "
                f"unknown {extra}."
            )
        return {n: check_dtype(dtype[n], f"dtype of site {n!r}") for n in names}
    d = check_dtype(dtype)
    return dict.fromkeys(names, d)


def check_settings(root: Path, manifest: dict[str, Any], **given: Any) -> None:
    """Raise :class:`StoreMismatchError` listing every setting that differs from the store's."""
    held_sites = {s["name"]: int(s["n_units"]) for s in manifest["sites"]}
    diffs = []
    sites = given["sites"]
    if sites is not None:
        want = {str(k): int(v) for k, v in sites.items()}
        if want != held_sites:
            missing = sorted(set(held_sites) - set(want))
            extra = sorted(set(want) - set(held_sites))
            units = {
                k: (held_sites[k], want[k])
                for k in want
                if k in held_sites and want[k] != held_sites[k]
            }
            diffs.append(
                f"sites: store has {len(held_sites)} sites, given {len(want)} "
                f"(not given: {missing}, not in store: {extra}, n_units store vs given: {units})"
            )
    if given["dtype"] is not None:
        names = list(held_sites)
        want_d = check_dtypes(given["dtype"], names) if sites is None or not diffs else None
        held_d = {s["name"]: s["dtype"] for s in manifest["sites"]}
        if want_d is not None and want_d != held_d:
            diffs.append(f"dtype: store has {held_d}, given {want_d}")
    for key in ("chunk_rows", "keep_fraction", "keep_seed"):
        if given[key] is not None and given[key] != manifest[key]:
            diffs.append(f"{key}: store has {manifest[key]!r}, given {given[key]!r}")
    if given["unit_chunk"] is not None:
        held_u = {s["name"]: s["unit_chunk"] for s in manifest["sites"]}
        want_u = {
            s["name"]: min(int(given["unit_chunk"]), int(s["n_units"])) for s in manifest["sites"]
        }
        if held_u != want_u:
            diffs.append(f"unit_chunk: store has {held_u}, given {given['unit_chunk']!r}")
    if given["compressor"] is not UNSET and given["compressor"] != manifest["compressor"]:
        diffs.append(
            f"compressor: store has {manifest['compressor']!r}, given {given['compressor']!r}"
        )
    if diffs:
        raise StoreMismatchError(
            f"The activation store at {str(root)!r} was created with other settings than given "
            "for appending: " + "; ".join(diffs) + ". Append with the store's own settings "
            "(open(path, mode='a') without them accepts what it holds), or write to a new path."
        )


def selection(sel: Any, n: int, what: str) -> slice | np.ndarray:
    """A slice (clipped like numpy, positive step) or validated int64 indices in ``[0, n)``."""
    if sel is None:
        return slice(0, n, 1)
    if isinstance(sel, slice):
        start, stop, step = sel.indices(n)
        if step < 1:
            raise StoreError(f"{what} slices must have a positive step; got {sel!r}.")
        return slice(start, max(start, stop), step)
    if isinstance(sel, (int, np.integer)) and not isinstance(sel, bool):
        sel = [sel]
    idx = np.asarray(sel.cpu() if isinstance(sel, torch.Tensor) else sel)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise StoreError(f"A boolean {what} mask must have length {n}; got {idx.shape}.")
        return np.flatnonzero(idx)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise StoreError(
            f"{what} must be None, a slice, or 1-D integer indices; got {type(sel).__name__} "
            f"with shape {idx.shape} and dtype {idx.dtype}."
        )
    idx = idx.astype(np.int64)
    idx = np.where(idx < 0, idx + n, idx)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise StoreError(
            f"{what} indices must be in [-{n}, {n}) (the store has {n} {what}); got values in "
            f"[{int(np.min(sel))}, {int(np.max(sel))}]."
        )
    return idx


LOCK = "store.lock"


def acquire_writer_lock(root: Path) -> int | None:
    """Take the store's writer lock (``store.lock``), or raise if another process holds it.

    A POSIX record lock (``fcntl.lockf``) on a file descriptor that the caller closes to
    release it: the kernel also drops it when the writer process exits, however it exits, so a
    killed writer never leaves a stale lock. Where ``fcntl`` does not exist (Windows) nothing is
    locked and None is returned.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(
            f"Another process is writing the activation store at {str(root)!r}; one writer at a "
            "time may append. Wait for it to finish (or stop it), then resume with "
            "ActivationStore.open(path, mode='a'), or read it meanwhile with mode='r'."
        ) from None
    return fd
