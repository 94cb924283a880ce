"""The SAE architectures by name: one small file each, registered here.

Examples:
    >>> from neuronatlas.sae import architectures, create_sae
    >>> architectures()
    ['batchtopk', 'jumprelu', 'relu', 'topk']
    >>> create_sae("topk", d_in=8, d_sae=32, k=4).d_sae
    32
"""

from __future__ import annotations

import difflib
from typing import Any

from neuronatlas.sae._base import SAEError, SparseAutoencoder

__all__ = ["architectures", "create_sae", "get_architecture", "register_architecture"]

_REGISTRY: dict[str, type[SparseAutoencoder]] = {}


def register_architecture(cls: type[SparseAutoencoder]) -> type[SparseAutoencoder]:
    """Register an SAE class under its ``architecture`` name (a class decorator).

    Raises:
        SAEError: the name is empty or already taken by another class.
    """
    name = getattr(cls, "architecture", "")
    if not name:
        raise SAEError(f"{cls.__name__} must set a non-empty class attribute 'architecture'.")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise SAEError(
            f"An SAE architecture named {name!r} is already registered "
            f"({_REGISTRY[name].__name__}); pick another name for {cls.__name__}."
        )
    _REGISTRY[name] = cls
    return cls


def architectures() -> list[str]:
    """The registered architecture names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_architecture(name: str) -> type[SparseAutoencoder]:
    """The class registered as ``name``; :class:`SAEError` listing the known names if none."""
    _load_builtin()
    cls = _REGISTRY.get(name)
    if cls is None:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SAEError(f"Unknown SAE architecture {name!r}. Known: {sorted(_REGISTRY)}.{hint}")
    return cls


def create_sae(arch: str, d_in: int, d_sae: int, **settings: Any) -> SparseAutoencoder:
    """A fresh SAE of architecture ``arch`` (settings as that class's constructor takes)."""
    cls = get_architecture(arch)
    try:
        return cls(d_in, d_sae, **settings)
    except TypeError as exc:
        raise SAEError(f"Bad settings for a {arch!r} SAE: {exc}.") from None


def _load_builtin() -> None:
    from neuronatlas.sae import _batchtopk, _jumprelu, _relu, _topk  # noqa: F401
