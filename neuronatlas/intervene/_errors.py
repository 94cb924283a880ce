"""The error raised by interventions."""

from __future__ import annotations

from neuronatlas.errors import NeuronAtlasError

__all__ = ["InterventionError"]


class InterventionError(NeuronAtlasError, ValueError):
    """An edit cannot be applied: a bad site, a bad edit argument, or an edit returned a tensor
    of the wrong shape."""
