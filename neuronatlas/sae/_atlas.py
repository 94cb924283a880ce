"""SAEs of an atlas: train on its activation store, evaluate, keep them under ``analyses/sae/``.

The folder ``ATLAS/analyses/sae/<name>/`` holds

- ``sae_weights.safetensors`` and ``cfg.json``: the SAE in SAELens's layout;
- ``checkpoint.pt``: the training state (resume with ``resume=True`` / ``--resume``);
- ``training_log.jsonl``: one JSON record per logged step;
- ``eval.json``: the evaluation figures (:func:`~neuronatlas.sae.evaluate_sae`, and
  :func:`~neuronatlas.sae.ce_loss_recovered` when asked for).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from neuronatlas.sae._base import SAEError, SparseAutoencoder

__all__ = ["atlas_sae_folder", "evaluate_atlas_sae", "train_atlas_sae"]


def _atlas_and_store(atlas: Any) -> tuple[Any, Any]:
    from neuronatlas.atlas import open_atlas

    at = open_atlas(atlas)
    return at, at.store()


def atlas_sae_folder(atlas: Any, name: str, *, create: bool = True) -> Path:
    """``ATLAS/analyses/sae/<name>/``."""
    from neuronatlas.atlas import analysis_dir

    return analysis_dir(getattr(atlas, "path", atlas), "sae", name, create=create)


def train_atlas_sae(
    atlas: Any,
    *,
    site: str,
    name: str,
    arch: str = "topk",
    d_sae: int | None = None,
    expansion: int = 8,
    sae_settings: dict[str, Any] | None = None,
    eval_samples: int | None = 100_000,
    resume: bool = False,
    **train_options: Any,
) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """Train an SAE on one site of an atlas's activation store and save it in the atlas.

    Args:
        atlas: the atlas (directory or :class:`~neuronatlas.atlas.Atlas`), built with
            ``keep_activations``.
        site: the site to read (a site of the store).
        name: the SAE's name (its folder ``analyses/sae/<name>``).
        arch: architecture (:func:`~neuronatlas.sae.architectures`).
        d_sae: features (default ``expansion × d_in``).
        expansion: used when ``d_sae`` is not given.
        sae_settings: the architecture's settings (``k``, ``l1_coefficient``, …).
        eval_samples: rows of the store evaluated after training (None: all).
        resume: continue from the folder's checkpoint.
        **train_options: options of :func:`~neuronatlas.sae.train_sae` (``steps``,
            ``n_samples``, ``batch_size``, ``lr``, ``device``, ``progress``, …).

    Returns:
        ``(sae, metrics)``: the trained SAE and its evaluation (also in ``eval.json``).
    """
    from neuronatlas.atlas import add_analysis
    from neuronatlas.sae._eval import evaluate_sae
    from neuronatlas.sae._io import save_sae
    from neuronatlas.sae._registry import create_sae
    from neuronatlas.sae._train import train_sae

    at, store = _atlas_and_store(atlas)
    if site not in store.sites:
        raise SAEError(f"The atlas's store has no site {site!r}; it holds {list(store.sites)}.")
    d_in = store.sites[site]
    sae = create_sae(arch, d_in, d_sae or expansion * d_in, **(sae_settings or {}))
    folder = atlas_sae_folder(at, name)
    train_options.setdefault("checkpoint_every", 200)
    result = train_sae(sae, store, site=site, checkpoint_dir=folder, resume=resume, **train_options)
    with open(folder / "training_log.jsonl", "w") as f:
        for record in result.log:
            f.write(json.dumps(record) + "\n")
    save_sae(sae, folder, site=site, model_name=at.manifest["model"].get("name"))
    metrics = evaluate_sae(sae, store, site=site, max_samples=eval_samples)
    metrics = _summary(metrics)
    metrics.update(
        {
            "train_steps": result.steps,
            "train_samples": result.samples,
            "train_seconds": round(result.seconds, 3),
            "train_samples_per_s": round(result.samples_per_s, 1),
            "train_nonfinite_rows": result.nonfinite_rows,
        }
    )
    (folder / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    add_analysis(
        at.path,
        "sae",
        name,
        files=[
            "sae_weights.safetensors",
            "cfg.json",
            "checkpoint.pt",
            "training_log.jsonl",
            "eval.json",
        ],
        site=site,
        architecture=sae.architecture,
        settings=sae.settings(),
        training={k: v for k, v in result.options.items()},
        metrics=metrics,
    )
    return sae, metrics


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of :func:`evaluate_sae`'s figures (without the per-feature array)."""
    return {k: v for k, v in metrics.items() if k != "freq"}


def _token_batches(at: Any, n_docs: int, batch_size: int = 8) -> list[dict[str, torch.Tensor]]:
    """The first ``n_docs`` sequences of the atlas as padded ``input_ids`` batches."""
    df = at.query(
        "select doc, pos, token_id from tokens where doc in "
        "(select distinct doc from tokens order by doc limit ?) order by doc, pos",
        [int(n_docs)],
    )
    seqs = [g["token_id"].to_numpy() for _, g in df.groupby("doc", sort=True)]
    out = []
    for b in range(0, len(seqs), batch_size):
        part = seqs[b : b + batch_size]
        length = max(len(s) for s in part)
        ids = torch.zeros(len(part), length, dtype=torch.int64)
        mask = torch.zeros(len(part), length, dtype=torch.int64)
        for i, s in enumerate(part):
            ids[i, : len(s)] = torch.as_tensor(s.copy())
            mask[i, : len(s)] = 1
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def evaluate_atlas_sae(
    atlas: Any,
    name: str,
    *,
    max_samples: int | None = None,
    ce_docs: int = 0,
    model: Any = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Evaluate the atlas's SAE ``name`` on its store (and loss recovered on ``ce_docs`` docs).

    Loss recovered needs a causal language model: ``model`` (an ``nn.Module``), or the atlas's
    own model loaded from its recorded source when ``model`` is None. Figures are written to
    ``eval.json`` and into the analysis entry.
    """
    from neuronatlas.atlas import add_analysis, get_analysis
    from neuronatlas.sae._eval import ce_loss_recovered, evaluate_sae
    from neuronatlas.sae._io import load_sae, read_cfg

    at, store = _atlas_and_store(atlas)
    entry = get_analysis(at.path, "sae", name)
    folder = at.path / entry["path"]
    sae = load_sae(folder, device=device or "cpu")
    site = entry.get("site") or (read_cfg(folder).get("metadata") or {}).get("hook_name")
    metrics = _summary(evaluate_sae(sae, store, site=site, max_samples=max_samples))
    if ce_docs:
        if model is None:
            from neuronatlas.models import load_model

            model = load_model(at.manifest["model"]["source"]).model
        metrics.update(ce_loss_recovered(model, sae, site, _token_batches(at, ce_docs)))
    (folder / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    meta = {
        k: v
        for k, v in entry.items()
        if k not in ("key", "kind", "name", "path", "created", "files")
    }
    meta["metrics"] = {**meta.get("metrics", {}), **metrics}
    files = sorted(set(entry.get("files", [])) | {"eval.json"})
    add_analysis(at.path, "sae", name, files=files, **meta)
    return metrics
