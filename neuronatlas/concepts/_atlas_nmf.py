"""NMF concept vectors of a site of an atlas, fitted on its activation store in bounded memory.

The rows of a site are streamed from the store as shuffled minibatches and factorized with
:class:`~neuronatlas.concepts.TorchNMF` (online multiplicative updates); a second, ordered pass
computes every token's concept scores chunk by chunk, keeps each concept's top tokens and
measures the reconstruction error. NMF needs non-negative rows: negative activations (GELU
units, the residual stream) are clipped at 0 and their share of the squared norm is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from neuronatlas.atlas import open_atlas
from neuronatlas.concepts._common import save_json, save_table
from neuronatlas.concepts._nmf import TorchNMF

if TYPE_CHECKING:
    import pandas as pd

    from neuronatlas.atlas import Atlas

__all__ = ["concepts_atlas"]


def concepts_atlas(
    atlas: str | Path | Atlas,
    site: str,
    *,
    n_concepts: int = 16,
    epochs: int = 1,
    batch_size: int = 4096,
    top_k: int = 20,
    name: str | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    save: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Fit NMF concept vectors on a site's stored activations.

    Args:
        atlas: an atlas built with ``keep_activations`` (or its path).
        site: the site to factorize.
        n_concepts: concepts. epochs: passes over the store for the fit.
        batch_size: rows per minibatch. top_k: top tokens kept per concept.
        name: analysis name (default ``nmf-<n_concepts>-<site>``).
        seed, device: the fit's seed and device.
        save: write ``analyses/concepts/<name>/`` and record it in ``atlas.json``.
        progress: called with a phase name (``fit``, ``scores``).

    Returns:
        ``(components, top, summary)``: ``components`` DataFrame ``concept, vector`` (list of
        floats, one per unit); ``top`` DataFrame ``concept, rank, score, doc, pos, token_id``;
        ``summary`` with ``n_nonfinite`` (rows with NaN/±inf, left out), ``relative_error`` (``||A+ - S P||_F / ||A+||_F`` over all rows, ``A+``
        the clipped rows), ``clipped_fraction`` (share of ``||A||_F^2`` that clipping removed)
        and ``n_rows``.
    """
    import pandas as pd

    a = open_atlas(atlas)
    store = a.store()
    a.store(site)
    nmf = TorchNMF(n_concepts, seed=seed, device=device)
    if progress is not None:
        progress("fit")
    batches = store.minibatches(
        site, batch_size, seed=seed, epochs=epochs, dtype=torch.float32, device=device
    )
    nmf.fit_batches(b[torch.isfinite(b).all(1)].clamp_min(0) for b in batches)  # NaN/inf rows out
    if progress is not None:
        progress("scores")
    p = torch.as_tensor(nmf.components_, dtype=torch.float32, device=device)
    best_s = torch.full((top_k, n_concepts), -1.0, dtype=torch.float32)
    best_r = torch.full((top_k, n_concepts), -1, dtype=torch.int64)
    err = norm = clipped = total = 0.0
    n_nonfinite = 0
    for rows, values in store.iter_chunks(site):
        x = torch.as_tensor(values, dtype=torch.float32, device=device)
        finite = torch.isfinite(x).all(1)
        n_nonfinite += int((~finite).sum())
        x = x[finite]
        xp = x.clamp_min(0)
        total += float((x.double() ** 2).sum())
        clipped += float(((x - xp).double() ** 2).sum())
        s = nmf._scores(xp, p, nmf.inner).float()
        err += float(((xp - s @ p).double() ** 2).sum())
        norm += float((xp.double() ** 2).sum())
        row_ids = torch.arange(rows.start, rows.stop)[finite.cpu()]
        cand_s = torch.cat([best_s, s.cpu()])
        cand_r = torch.cat([best_r, row_ids[:, None].expand(-1, n_concepts)])
        k = min(top_k, len(cand_s))
        best_s, idx = cand_s.topk(k, dim=0)
        best_r = cand_r.gather(0, idx)
    summary = {
        "relative_error": (err / norm) ** 0.5 if norm else float("nan"),
        "clipped_fraction": clipped / total if total else 0.0,
        "n_rows": store.n_rows,
        "n_nonfinite": n_nonfinite,
    }
    components = pd.DataFrame(
        {"concept": np.arange(n_concepts), "vector": list(nmf.components_.astype(np.float32))}
    )
    top_rows = []
    for c in range(n_concepts):
        for rank in range(best_s.shape[0]):
            if best_r[rank, c] >= 0:
                top_rows.append((c, rank, float(best_s[rank, c]), int(best_r[rank, c])))
    top = pd.DataFrame(top_rows, columns=["concept", "rank", "score", "row"])
    index = store.index(top["row"].to_numpy()).to_pandas() if len(top) else None
    if index is not None:
        top = top.assign(
            doc=index["doc"].to_numpy(),
            pos=index["pos"].to_numpy(),
            token_id=index["token_id"].to_numpy(),
        ).drop(columns="row")
    if save:
        from neuronatlas.atlas import add_analysis, analysis_dir

        key = name or f"nmf-{n_concepts}-{site.replace(':', '_')}"[:128]
        folder = analysis_dir(a.path, "concepts", key)
        files = [
            save_table(components, folder / "components.parquet"),
            save_table(top, folder / "top_tokens.parquet"),
            save_json(summary, folder / "summary.json"),
        ]
        add_analysis(
            a.path,
            "concepts",
            key,
            files=files,
            method="nmf",
            site=site,
            n_concepts=n_concepts,
            summary=summary,
            settings={"epochs": epochs, "batch_size": batch_size, "top_k": top_k, "seed": seed},
        )
    return components, top, summary
