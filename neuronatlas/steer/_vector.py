"""Steering vectors: tensors with their site, method and provenance, saved as safetensors + JSON."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neuronatlas.steer._errors import SteeringError

__all__ = ["SteeringVector", "data_hash", "load_vectors", "save_vectors"]

FORMAT = "neuronatlas.steering-vectors"
VERSION = 1


def data_hash(*parts: Iterable[Any]) -> str:
    """SHA-256 of the data a vector was computed from (texts or token ids, in order).

    Each part is a sequence of items (strings, token-id sequences or tensors); the hash changes
    with any item, their order and the split into parts.

    Examples:
        >>> data_hash(["a", "b"]) == data_hash(["a", "b"]), data_hash(["a", "b"]) == data_hash(["ab"])
        (True, False)
    """
    h = hashlib.sha256()
    for part in parts:
        h.update(b"\x00part")
        for item in part:
            if isinstance(item, str):
                h.update(b"\x01s" + item.encode("utf-8"))
            else:
                ids = torch.as_tensor(item).reshape(-1).to(torch.int64)
                h.update(b"\x01i" + ids.numpy().tobytes())
    return h.hexdigest()


@dataclass
class SteeringVector:
    """A steering intervention for one site: its tensors, how it was made, from what.

    Attributes:
        site: the site name it applies to (see :mod:`neuronatlas.sites`).
        method: ``"caa"``, ``"fv"``, ``"transport"`` (or any registered method name); decides
            how :meth:`edit` applies the tensors.
        tensors: ``{"vector": (unit,)}`` for additive methods; the transport maps hold
            ``scale``, ``shift``, ``lo``, ``hi`` (each ``(unit,)``).
        source_hash: :func:`data_hash` of the data it was computed from.
        meta: JSON-serializable settings and figures (number of examples, reduction, norm...).
    """

    site: str
    method: str
    tensors: dict[str, Tensor]
    source_hash: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def vector(self) -> Tensor:
        """The additive vector ``(unit,)`` (``KeyError`` for methods that have none)."""
        return self.tensors["vector"]

    @property
    def n_units(self) -> int:
        return int(next(iter(self.tensors.values())).shape[-1])

    def edit(self, coef: float = 1.0, *, positions: Any = "all") -> Any:
        """The edit that applies this vector with strength ``coef`` (see
        :func:`neuronatlas.steer.edit_for`)."""
        from neuronatlas.steer._methods import edit_for

        return edit_for(self, coef, positions=positions)

    def save(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``PATH.safetensors`` and ``PATH.json`` (see :func:`save_vectors`)."""
        return save_vectors(path, [self])

    @classmethod
    def load(cls, path: str | os.PathLike[str], site: str | None = None) -> SteeringVector:
        """Read one vector written by :meth:`save` or :func:`save_vectors` (``site`` picks one
        of several)."""
        vectors = load_vectors(path)
        if site is not None:
            found = [v for v in vectors if v.site == site]
            if not found:
                raise SteeringError(
                    f"{str(path)!r} holds no vector for site {site!r}; it has "
                    f"{[v.site for v in vectors]}."
                )
            return found[0]
        if len(vectors) != 1:
            raise SteeringError(
                f"{str(path)!r} holds {len(vectors)} vectors (sites {[v.site for v in vectors]}); "
                "pass site=... to pick one, or use load_vectors."
            )
        return vectors[0]

    def __repr__(self) -> str:
        shapes = {k: tuple(v.shape) for k, v in self.tensors.items()}
        return f"SteeringVector(site={self.site!r}, method={self.method!r}, tensors={shapes})"


def _paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_vectors(
    path: str | os.PathLike[str], vectors: Sequence[SteeringVector]
) -> tuple[Path, Path]:
    """Write steering vectors to ``PATH.safetensors`` (tensors, keys ``"<i>/<name>"``) and
    ``PATH.json`` (format, version and per vector: site, method, source hash, meta).

    Both files are written to temporary names and renamed, the JSON last.

    Returns:
        The two paths.
    """
    from safetensors.torch import save_file

    if not vectors:
        raise SteeringError("save_vectors: no vectors given.")
    st, js = _paths(path)
    st.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{i}/{k}": t.detach().to("cpu").clone().contiguous()
        for i, v in enumerate(vectors)
        for k, t in v.tensors.items()
    }
    entries = [
        {
            "site": v.site,
            "method": v.method,
            "source_hash": v.source_hash,
            "tensors": sorted(v.tensors),
            "meta": v.meta,
        }
        for v in vectors
    ]
    tmp_st, tmp_js = st.with_name(st.name + ".tmp"), js.with_name(js.name + ".tmp")
    save_file(tensors, str(tmp_st), metadata={"format": FORMAT})
    tmp_js.write_text(
        json.dumps({"format": FORMAT, "version": VERSION, "vectors": entries}, indent=1)
    )
    os.replace(tmp_st, st)
    os.replace(tmp_js, js)
    return st, js


def load_vectors(path: str | os.PathLike[str]) -> list[SteeringVector]:
    """Read the vectors written by :func:`save_vectors` (``PATH``, ``PATH.json`` or
    ``PATH.safetensors``)."""
    from safetensors.torch import load_file

    st, js = _paths(path)
    if not st.exists() or not js.exists():
        raise SteeringError(
            f"Expected steering vectors at {str(st)!r} and {str(js)!r}; "
            f"{'neither exists' if not st.exists() and not js.exists() else 'one is missing'}. "
            "Write them with save_vectors / SteeringVector.save."
        )
    try:
        manifest = json.loads(js.read_text())
    except json.JSONDecodeError as e:
        raise SteeringError(f"{str(js)!r} is not valid JSON ({e}).") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise SteeringError(
            f"{str(js)!r} is not a steering-vector file of format {FORMAT!r} version {VERSION}; "
            f"got format {manifest.get('format')!r} version {manifest.get('version')!r}."
        )
    tensors = load_file(str(st))
    out = []
    for i, e in enumerate(manifest["vectors"]):
        try:
            ts = {k: tensors[f"{i}/{k}"] for k in e["tensors"]}
        except KeyError as err:
            raise SteeringError(f"{str(st)!r} lacks tensor {err} listed in {str(js)!r}.") from None
        out.append(
            SteeringVector(e["site"], e["method"], ts, e.get("source_hash", ""), e.get("meta", {}))
        )
    return out
