"""The on-disk atlas format: file names, the manifest, and version checks.

The format is documented for users in docs/atlas-format.md; this module is its single source of
truth in code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from neuronatlas.errors import AtlasError, FormatVersionError

FORMAT = "neuronatlas.atlas"
VERSION = 1

MANIFEST = "atlas.json"
UNITS = "units.parquet"
EXEMPLARS = "exemplars.parquet"
TOKENS = "tokens.parquet"
DOCS = "docs.parquet"
STORE = "store"
PARTIAL = ".partial"  # work in progress of an interrupted build

TABLES = {"units": UNITS, "exemplars": EXEMPLARS, "tokens": TOKENS, "docs": DOCS}


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` so that a reader sees the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and check ``atlas.json`` of the atlas directory ``path``.

    Raises:
        AtlasError: the directory or manifest is missing or not an atlas.
        FormatVersionError: the atlas was written by a format version this reader does not know.
    """
    path = Path(path)
    if not path.exists():
        raise AtlasError(f"No atlas at {str(path)!r}: the directory does not exist.")
    file = path / MANIFEST if path.is_dir() else path
    if not file.exists():
        raise AtlasError(
            f"{str(path)!r} is not an atlas: it has no {MANIFEST}. "
            "Build one with `neuronatlas map --out DIR` or neuronatlas.build_atlas(...)."
        )
    try:
        manifest = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AtlasError(f"Cannot read the atlas manifest {str(file)!r}: {exc}.") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise AtlasError(
            f"{str(file)!r} is not a neuronatlas atlas manifest: expected "
            f'"format": "{FORMAT}", got {manifest.get("format") if isinstance(manifest, dict) else manifest!r}.'
        )
    version = manifest.get("version")
    if version != VERSION:
        raise FormatVersionError(
            f"The atlas at {str(path)!r} has format version {version!r}; this neuronatlas reads "
            f"version {VERSION}. Rebuild it with this version (`neuronatlas map --force`), or use the "
            "neuronatlas release that wrote it."
        )
    return manifest
