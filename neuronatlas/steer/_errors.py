"""The error raised by steering methods."""

from __future__ import annotations

from neuronatlas.errors import NeuronAtlasError

__all__ = ["SteeringError"]


class SteeringError(NeuronAtlasError, ValueError):
    """Steering inputs that cannot be used: unpaired data, empty sets, a vector file that does not
    match, a site the vector was not computed for."""
