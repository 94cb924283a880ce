"""Results of analyses kept inside an atlas: ``ATLAS/analyses/<kind>/<name>/``.

Every analysis that runs on an atlas (an SAE and its evaluation, probes, head scores, steering
sweeps, comparisons) writes its files in its own folder and records itself in the manifest
under ``"analyses"``, so the viewer, ``neuronatlas info`` and other tools find it without knowing
the analysis. The entry is written last, atomically: a crashed analysis leaves no entry (and a
folder that the next run of the same analysis overwrites).

Examples:
    >>> import tempfile
    >>> from neuronatlas.viewer import write_synthetic_atlas
    >>> atlas = write_synthetic_atlas(tempfile.mkdtemp() + "/atlas", n_layers=1, n_units=4)
    >>> folder = analysis_dir(atlas, "heads", "scores")
    >>> _ = (folder / "scores.parquet").write_bytes(b"")
    >>> entry = add_analysis(atlas, "heads", "scores", files=["scores.parquet"], n_heads=12)
    >>> entry["path"], entry["n_heads"]
    ('analyses/heads/scores', 12)
    >>> [a["key"] for a in list_analyses(atlas)]
    ['heads/scores']
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neuronatlas.atlas import _format as fmt
from neuronatlas.errors import AtlasError

__all__ = ["ANALYSES", "add_analysis", "analysis_dir", "get_analysis", "list_analyses"]

ANALYSES = "analyses"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _check_name(what: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise AtlasError(
            f"An analysis {what} must be 1-128 characters of letters, digits, '.', '_' or '-' "
            f"starting with a letter or digit (it names a folder); got {value!r}."
        )
    return value


def analysis_dir(atlas: str | Path, kind: str, name: str, *, create: bool = True) -> Path:
    """The folder of analysis ``kind/name`` in ``atlas`` (created unless ``create=False``)."""
    path = Path(atlas)
    fmt.read_manifest(path)  # an atlas, of a version we know
    folder = path / ANALYSES / _check_name("kind", kind) / _check_name("name", name)
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def add_analysis(
    atlas: str | Path, kind: str, name: str, *, files: list[str] | None = None, **meta: Any
) -> dict[str, Any]:
    """Record analysis ``kind/name`` in the manifest (replacing an earlier entry of that key).

    Call it after the analysis's files are written in :func:`analysis_dir`. ``files`` lists
    them relative to that folder (each must exist); ``meta`` is any JSON-serializable
    description (settings, figures, the sites it covers).

    Returns:
        The manifest entry: ``key`` (``kind/name``), ``kind``, ``name``, ``path`` (relative to
        the atlas), ``created``, ``files`` and ``meta``'s items.
    """
    path = Path(atlas)
    folder = analysis_dir(path, kind, name, create=False)
    missing = [f for f in files or [] if not (folder / f).exists()]
    if missing:
        raise AtlasError(
            f"Analysis {kind}/{name}: files {missing} are not in {str(folder)!r}; write them "
            "before recording the analysis."
        )
    manifest = fmt.read_manifest(path)
    key = f"{kind}/{name}"
    entry = {
        "key": key,
        "kind": kind,
        "name": name,
        "path": f"{ANALYSES}/{kind}/{name}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": list(files or []),
        **meta,
    }
    analyses = dict(manifest.get(ANALYSES) or {})
    analyses[key] = entry
    manifest[ANALYSES] = analyses
    fmt.write_json_atomic(path / fmt.MANIFEST, manifest)
    return entry


def list_analyses(atlas: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The analyses recorded in ``atlas`` (optionally only of ``kind``), in the order added."""
    manifest = fmt.read_manifest(Path(atlas))
    entries = list((manifest.get(ANALYSES) or {}).values())
    return [e for e in entries if kind is None or e.get("kind") == kind]


def get_analysis(atlas: str | Path, kind: str, name: str) -> dict[str, Any]:
    """The manifest entry of ``kind/name``; :class:`AtlasError` listing the known ones if absent."""
    entries = list_analyses(atlas)
    for e in entries:
        if e.get("kind") == kind and e.get("name") == name:
            return e
    known = ", ".join(e["key"] for e in entries) or "none"
    raise AtlasError(
        f"The atlas at {str(atlas)!r} has no analysis {kind}/{name}. Recorded analyses: {known}."
    )
