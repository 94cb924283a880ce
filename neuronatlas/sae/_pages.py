"""Viewer panel of SAEs: an SAE feature's decoder direction, a neuron's reading features.

On the unit page of an SAE feature (a site ``"<site>@sae:<name>"``) the panel lists the source
units its decoder direction weighs most (``W_dec[feature]``, largest ``|w|`` first); on the unit
page of a source unit it lists the features of every mapped SAE of that site whose encoder
reads it most (``W_enc[unit]``, largest first). Weights are read from the SAE's
``sae_weights.safetensors`` (one row or column, not the whole matrix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neuronatlas.viewer import register_unit_panel
from neuronatlas.viewer._registry import UnitContext

TOP = 8


def _weights(folder: Path, name: str, index: int, axis: int) -> np.ndarray | None:
    from safetensors import safe_open

    file = folder / "sae_weights.safetensors"
    if not file.is_file():
        return None
    with safe_open(str(file), framework="numpy") as f:
        sl = f.get_slice(name)
        shape = sl.get_shape()
        if not 0 <= index < shape[axis]:
            return None
        return np.asarray(sl[index] if axis == 0 else sl[:, index : index + 1]).reshape(-1)


def _entries(ctx: UnitContext) -> list[dict[str, Any]]:
    sites = {s.get("name"): s for s in ctx.atlas.manifest.get("sites") or [] if isinstance(s, dict)}
    analyses = (ctx.atlas.manifest.get("analyses") or {}).values()
    return [a for a in analyses if a.get("kind") == "sae" and a.get("derived_site") in sites]


@register_unit_panel("sae", title="SAE", template="panel_sae.html", order=45, wide=True,
                     templates=Path(__file__).parent / "templates")  # fmt: skip
def sae_panel(ctx: UnitContext) -> dict[str, Any] | None:
    """Top source units of a feature, or top features reading a unit; None when neither."""
    rows: list[dict[str, Any]] = []
    for a in _entries(ctx):
        folder = ctx.atlas.path / a["path"]
        if ctx.site.name == a["derived_site"]:
            w = _weights(folder, "W_dec", ctx.unit, axis=0)
            if w is None:
                continue
            order = np.argsort(-np.abs(w), kind="stable")[:TOP]
            title = f"Decoder direction of this feature: the units of {a['site']} it writes most"
            rows = [
                {
                    "site": a["site"],
                    "unit": int(u),
                    "weight": float(w[u]),
                    "url": ctx.links.unit(a["site"], int(u)),
                }
                for u in order
            ]
            return {"title": title, "rows": rows}
        if ctx.site.name == a.get("site"):
            w = _weights(folder, "W_enc", ctx.unit, axis=0)
            if w is None:
                continue
            order = np.argsort(-w, kind="stable")[:TOP]
            site = a["derived_site"]
            rows += [
                {
                    "site": site,
                    "unit": int(u),
                    "weight": float(w[u]),
                    "url": ctx.links.unit(site, int(u)),
                }
                for u in order
            ]
    if not rows:
        return None
    return {"title": "SAE features whose encoder reads this unit most", "rows": rows}
