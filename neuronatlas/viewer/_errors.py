"""Errors of the viewer. Each carries the HTTP status it is answered with."""

from __future__ import annotations

from neuronatlas.errors import NeuronAtlasError

__all__ = ["BadRequestError", "NotFoundError", "RegistryError", "ViewerError"]


class ViewerError(NeuronAtlasError):
    """A request or an extension of the viewer that cannot be served as asked."""

    status_code = 400


class BadRequestError(ViewerError, ValueError):
    """A request parameter is unknown, malformed or out of range (HTTP 400)."""

    status_code = 400


class NotFoundError(ViewerError, LookupError):
    """A site, unit or page that the atlas does not hold (HTTP 404)."""

    status_code = 404


class RegistryError(ViewerError, KeyError):
    """A page, panel, column or table registered twice, or looked up under an unknown key."""

    status_code = 500

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
