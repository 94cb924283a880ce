"""ICE: concept vectors of a site, and the model's fidelity when its activations are rebuilt.

"Invertible Concept-based Explanations for CNN Models with Non-negative Concept Activation
Vectors" (Zhang, Madumal, Miller, Ehinger & Rubinstein, 2021). The feature maps of a site,
``(batch, C, H, W)``, become rows ``(batch·H·W, C)`` (one per location; for ``(batch, pos, C)``
sites one per position). A decomposition (:mod:`neuronatlas.concepts._nmf`) factorizes them into
concept vectors and per-location concept scores. Because it is invertible, the activations can
be rebuilt from the scores and fed through the rest of the model:

- **fidelity** = the model's accuracy with the rebuilt activations, its **agreement** with the
  model's original predictions, and the relative reconstruction error
  ``||A - Â||_F / ||A||_F`` on the same inputs;
- **concept heat-maps**: each concept's score map ``(H, W)`` upsampled (bilinear) to the
  input's size, overlaid on the image.

The replacement is a forward hook on the site's module that returns the rebuilt tensor; it is
removed when the ``with`` block ends, also on errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from neuronatlas._lazy import require
from neuronatlas.concepts._common import ConceptError
from neuronatlas.concepts._nmf import Decomposition, make_decomposition
from neuronatlas.intervene import intervene
from neuronatlas.sites import Site, resolve_sites

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "concept_maps",
    "fidelity",
    "fidelity_table",
    "fit_concepts",
    "save_heatmaps",
    "site_rows",
]


def _one_site(model: nn.Module, site: str | Site) -> tuple[Site, nn.Module]:
    (s,) = resolve_sites(model, site) if not isinstance(site, Site) else (site,)
    if s.hook == "attn":
        raise ConceptError(f"Site {s.name!r}: concept vectors need unit activations, not ':attn'.")
    return s, model.get_submodule(s.module)


def _to_rows(t: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """``(batch, C, *spatial)`` / ``(batch, pos, C)`` / ``(batch, C)`` → rows, and back."""
    shape = t.shape
    if t.dim() >= 4:
        moved = torch.movedim(t, 1, -1)
        mshape = moved.shape
        return moved.reshape(-1, shape[1]), lambda r: torch.movedim(r.reshape(mshape), -1, 1)
    return t.reshape(-1, shape[-1]), lambda r: r.reshape(shape)


def _map_size(model: nn.Module, site: Site, x: Tensor) -> tuple[int, int]:
    """``(H, W)`` of the site's feature maps, read off one forward pass."""
    shapes: list[torch.Size] = []
    module = model.get_submodule(site.module)
    if site.hook == "input":
        handle = module.register_forward_pre_hook(lambda m, args: shapes.append(args[0].shape))
    else:
        handle = module.register_forward_hook(lambda m, args, out: shapes.append(out.shape))
    try:
        model(x)
    finally:
        handle.remove()
    if not shapes or len(shapes[0]) != 4:
        raise ConceptError(f"Site {site.name!r} has no (batch, C, H, W) feature maps to draw.")
    return int(shapes[0][-2]), int(shapes[0][-1])


def _batches(inputs: Tensor, batch_size: int) -> Iterator[Tensor]:
    for b in range(0, len(inputs), batch_size):
        yield inputs[b : b + batch_size]


@torch.no_grad()
def site_rows(
    model: nn.Module, site: str | Site, inputs: Tensor, *, batch_size: int = 256
) -> np.ndarray:
    """The site's activations over ``inputs`` as rows ``(input·location, C)`` (float32 numpy)."""
    from neuronatlas.record import Recorder

    s, _ = _one_site(model, site)
    out = []
    with Recorder(model, [s]) as rec:
        for x in _batches(inputs, batch_size):
            model(x)
            (acts,) = rec.pop().values()  # (batch, pos, unit)
            out.append(acts.reshape(-1, acts.shape[-1]).float().cpu().numpy())
    return np.concatenate(out)


def fit_concepts(
    model: nn.Module,
    site: str | Site,
    inputs: Tensor,
    *,
    method: str = "nmf",
    n_concepts: int = 8,
    seed: int = 0,
    batch_size: int = 256,
    **kwargs: Any,
) -> Decomposition:
    """Fit a decomposition of the site's activation rows over ``inputs``.

    Args:
        model, site: the model and one site (a name; see :func:`~neuronatlas.resolve_sites`).
        inputs: ``(batch, ...)`` model inputs. method: ``nmf``, ``nmf-torch``, ``pca``,
            ``kmeans``. n_concepts: concepts. seed: the decomposition's seed.
        kwargs: passed to the decomposition.

    Returns:
        The fitted decomposition (``components_``: ``(concept, C)``).
    """
    rows = site_rows(model, site, inputs, batch_size=batch_size)
    if method.startswith("nmf") and rows.min() < 0:
        raise ConceptError(
            f"NMF needs non-negative activations; site {site!r} has a minimum of "
            f"{rows.min():.4g}. Pick a site after a ReLU (ICE factorizes post-ReLU feature maps)."
        )
    return make_decomposition(method, n_concepts, seed=seed, **kwargs).fit(rows)


def _rebuild(decomposition: Decomposition) -> Callable[[Tensor], Tensor]:
    def fn(t: Tensor) -> Tensor:
        rows, back = _to_rows(t)
        dtype = np.asarray(decomposition.components_).dtype
        r = rows.detach().cpu().numpy().astype(dtype)
        rebuilt = decomposition.inverse_transform(decomposition.transform(r))
        return back(torch.as_tensor(np.asarray(rebuilt), dtype=t.dtype, device=t.device))

    return fn


@torch.no_grad()
def fidelity(
    model: nn.Module,
    site: str | Site,
    decomposition: Decomposition,
    inputs: Tensor,
    labels: Tensor | np.ndarray,
    *,
    batch_size: int = 256,
) -> dict[str, float]:
    """The model's accuracy with the site rebuilt from concepts (ICE's fidelity).

    The model must return class logits ``(batch, class)`` (or an object whose first tensor they
    are).

    Returns:
        ``accuracy`` (rebuilt), ``original_accuracy``, ``agreement`` (rebuilt prediction equals
        the original prediction) and ``relative_error`` of the rebuilt activations.
    """
    from neuronatlas.record._capture import first_tensor

    labels = torch.as_tensor(np.asarray(labels))
    orig, new, err, norm = [], [], 0.0, 0.0
    rebuild = _rebuild(decomposition)

    def keep(t: Tensor) -> Tensor:
        nonlocal err, norm
        r = rebuild(t)
        err += float(((t.double() - r.double()) ** 2).sum())
        norm += float((t.double() ** 2).sum())
        return r

    for x in _batches(inputs, batch_size):
        orig.append(first_tensor(model(x)).argmax(-1).cpu())  # type: ignore[union-attr]
        with intervene(model, {site: lambda t, ctx: keep(t)}):
            new.append(first_tensor(model(x)).argmax(-1).cpu())  # type: ignore[union-attr]
    o, n = torch.cat(orig), torch.cat(new)
    return {
        "accuracy": float((n == labels).double().mean()),
        "original_accuracy": float((o == labels).double().mean()),
        "agreement": float((n == o).double().mean()),
        "relative_error": (err / norm) ** 0.5 if norm > 0 else float("nan"),
    }


def fidelity_table(
    model: nn.Module,
    site: str | Site,
    fit_inputs: Tensor,
    eval_inputs: Tensor,
    eval_labels: Tensor | np.ndarray,
    *,
    methods: Sequence[str] = ("nmf", "pca", "kmeans"),
    n_concepts: Sequence[int] = (2, 4, 8, 16, 32),
    seed: int = 0,
    progress: Callable[[str, int], None] | None = None,
) -> pd.DataFrame:
    """ICE's comparison: fidelity of each method at each number of concepts.

    Concepts are fitted on ``fit_inputs`` and the fidelity measured on ``eval_inputs``.

    Returns:
        DataFrame ``method, n_concepts, accuracy, original_accuracy, agreement,
        relative_error``.
    """
    import pandas as pd

    rows = site_rows(model, site, fit_inputs)
    out = []
    for method in methods:
        for k in n_concepts:
            if progress is not None:
                progress(method, k)
            if method.startswith("nmf") and rows.min() < 0:
                raise ConceptError(f"NMF needs non-negative activations at {site!r}.")
            dec = make_decomposition(method, int(k), seed=seed).fit(rows)
            f = fidelity(model, site, dec, eval_inputs, eval_labels)
            out.append({"method": method, "n_concepts": int(k), **f})
    return pd.DataFrame(out)


@torch.no_grad()
def concept_maps(
    model: nn.Module,
    site: str | Site,
    decomposition: Decomposition,
    images: Tensor,
    *,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Per-image concept score maps, upsampled to the image size.

    Args:
        images: ``(batch, channel, H_img, W_img)``. size: output size (default the images').

    Returns:
        ``(batch, concept, H_img, W_img)`` scores (bilinear upsampling of the site's
        ``(H, W)`` score maps, as in ICE).
    """
    from neuronatlas.record import Recorder

    s, _ = _one_site(model, site)
    with Recorder(model, [s]) as rec:
        model(images)
        (acts,) = rec.pop().values()  # (batch, H*W, C)
    h, w = _map_size(model, s, images[:1])
    dtype = np.asarray(decomposition.components_).dtype
    scores = decomposition.transform(acts.reshape(-1, acts.shape[-1]).cpu().numpy().astype(dtype))
    maps = torch.as_tensor(np.asarray(scores), dtype=torch.float32)
    maps = maps.reshape(len(images), h, w, -1).permute(0, 3, 1, 2)
    size = size or tuple(images.shape[-2:])  # type: ignore[assignment]
    up = torch.nn.functional.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return up.numpy()


def save_heatmaps(
    images: np.ndarray | Tensor,
    maps: np.ndarray,
    path: str | Path,
    *,
    concepts: Sequence[int] | None = None,
    titles: Sequence[str] | None = None,
) -> Path:
    """Draw each image and its concept heat-maps (one row per image) into a PNG.

    Args:
        images: ``(batch, 1 or 3, H, W)``. maps: ``(batch, concept, H, W)`` from
            :func:`concept_maps`. concepts: which concepts (default all). titles: per image.

    Returns:
        The PNG path.
    """
    mpl = require("matplotlib")
    mpl.use("Agg")
    plt = require("matplotlib.pyplot")
    images = np.asarray(images)
    concepts = list(range(maps.shape[1])) if concepts is None else list(concepts)
    n, m = len(images), len(concepts)
    fig, axes = plt.subplots(n, m + 1, figsize=(1.3 * (m + 1), 1.3 * n), squeeze=False)
    vmax = [float(maps[:, c].max()) or 1.0 for c in concepts]  # one colour scale per concept
    for i in range(n):
        img = images[i].transpose(1, 2, 0)
        img = img[..., 0] if img.shape[-1] == 1 else img
        axes[i, 0].imshow(img, cmap="gray_r")
        axes[i, 0].set_ylabel(titles[i] if titles else "", fontsize=7)
        for j, c in enumerate(concepts):
            axes[i, j + 1].imshow(img, cmap="gray_r")
            axes[i, j + 1].imshow(maps[i, c], cmap="inferno", alpha=0.7, vmin=0, vmax=vmax[j])
            if i == 0:
                axes[i, j + 1].set_title(f"concept {c}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
