"""Exceptions raised by neuronatlas.

Everything neuronatlas raises on purpose derives from :class:`NeuronAtlasError`, so a caller can
catch one class. Messages follow one pattern: what was expected, what came, and what to do.

Examples:
    >>> from neuronatlas.errors import NeuronAtlasError, SiteError
    >>> issubclass(SiteError, NeuronAtlasError)
    True
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AccumulatorError",
    "AtlasError",
    "AtlasExistsError",
    "DataError",
    "FormatVersionError",
    "MissingExtraError",
    "ModelLoadError",
    "NeuronAtlasError",
    "RecordingError",
    "SiteError",
    "StoreCorruptedError",
    "StoreError",
    "StoreMismatchError",
    "closest",
]


class NeuronAtlasError(Exception):
    """Root of every error neuronatlas raises on purpose."""


class SiteError(NeuronAtlasError, KeyError):
    """A site name, glob or preset does not resolve on the model's module tree."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(NeuronAtlasError, ValueError):
    """A corpus or an input batch is empty, unreadable or malformed."""


class ModelLoadError(NeuronAtlasError):
    """A model could not be loaded (unknown id offline, bad folder, bad entry point)."""


class RecordingError(NeuronAtlasError):
    """A hooked module produced something that cannot be read as unit activations."""


class AccumulatorError(NeuronAtlasError, ValueError):
    """Accumulator states that cannot be combined, or a batch of the wrong shape."""


class StoreError(NeuronAtlasError):
    """The activation store cannot be opened, written or read as asked."""


class StoreCorruptedError(StoreError):
    """A chunk of the activation store fails its checksum or is truncated."""


class StoreMismatchError(StoreError):
    """A store was opened for append with other settings (sites, units, dtype) than it holds."""


class FormatVersionError(NeuronAtlasError):
    """An atlas or store was written by a format version this neuronatlas cannot read."""


class AtlasError(NeuronAtlasError):
    """An atlas directory is missing, incomplete or malformed."""


class AtlasExistsError(AtlasError):
    """An atlas already exists at the output path with different settings."""


class MissingExtraError(NeuronAtlasError, ImportError):
    """An optional dependency is not installed; the message gives the install line."""


def closest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return the candidates closest to ``name``, best first (for "did you mean" messages).

    Examples:
        >>> closest("encoder.layer.0.ouput", ["encoder.layer.0.output", "pooler"])
        ['encoder.layer.0.output']
    """
    candidates = list(candidates)
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.4)
    if not found:  # fall back to shared prefixes, so the message always suggests something
        stem = name.split("*")[0].rstrip(".")
        found = [c for c in candidates if c.startswith(stem)][:n] if stem else []
    return found
