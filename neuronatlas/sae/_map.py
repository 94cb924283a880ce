"""SAE features as atlas units: encode an atlas's stored activations, characterize every feature.

:func:`map_sae` reads the activation store of an atlas (built with ``keep_activations``),
whole sequences at a time, encodes them through the SAE, and feeds the feature activations to
the same accumulators that characterize neurons (:class:`~neuronatlas.units.SiteStats`:
moments, quantiles, top-k exemplars with their context, taxonomy statistics), with the
atlas's own settings. The features are then labelled like neurons and appended to the atlas
as a derived site ``"<source site>@sae:<name>"`` (kind ``"sae"``), so every table, query and
viewer page that shows neurons shows them too. The SAE itself is saved under
``analyses/sae/<name>/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from neuronatlas.sae._base import SAEError, SparseAutoencoder

__all__ = ["map_sae", "sae_site_name"]


def sae_site_name(source: str, name: str) -> str:
    """The derived site of SAE ``name`` on ``source``: ``"<source>@sae:<name>"``."""
    return f"{source}@sae:{name}"


def _sequences(store: Any, site: str, max_rows: int) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    """Yield ``(values, index)`` blocks of whole sequences (runs of one doc), in store order.

    Rows of one sequence are contiguous in a store written by an atlas build; a block ends at
    a sequence boundary, so the context around an exemplar is never cut by the blocking.
    """
    carry_v: np.ndarray | None = None
    carry_i: pd.DataFrame | None = None
    n_chunks = store.n_chunks
    for i, (rows, values) in enumerate(store.iter_chunks(site)):
        index = store.index(rows).to_pandas()
        if carry_v is not None:
            values = np.concatenate([carry_v, values])
            index = pd.concat([carry_i, index], ignore_index=True)
        if i == n_chunks - 1:
            cut = len(index)
        else:
            doc = index["doc"].to_numpy()
            starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
            cut = int(starts[-1])  # the last sequence may continue in the next chunk
            if cut == 0:  # one sequence longer than the chunk: keep reading
                carry_v, carry_i = values, index
                continue
        doc = index["doc"].to_numpy()
        b = 0
        while b < cut:
            e = min(cut, b + max_rows)
            if e < cut:  # end the block at a sequence boundary
                bounds = np.flatnonzero(doc[b + 1 : e + 1] != doc[b:e]) + b + 1
                if len(bounds):
                    e = int(bounds[-1])
                else:  # one sequence longer than max_rows: take it whole
                    after = np.flatnonzero(doc[e:cut] != doc[b]) + e
                    e = int(after[0]) if len(after) else cut
            yield values[b:e], index.iloc[b:e].reset_index(drop=True)
            b = e
        carry_v, carry_i = values[cut:], index.iloc[cut:].reset_index(drop=True)


def _site_batch(z: torch.Tensor, index: pd.DataFrame) -> Any:
    """A ``(sequence, pos, d_sae)`` SiteBatch of the codes of a block of whole sequences."""
    from neuronatlas.stats import SiteBatch

    doc = index["doc"].to_numpy(dtype=np.int64, copy=True)
    pos = index["pos"].to_numpy(dtype=np.int64, copy=True)
    starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
    seq = np.cumsum(np.r_[True, doc[1:] != doc[:-1]]) - 1
    offset = np.arange(len(doc)) - starts[seq]
    n_seq, length = len(starts), int(offset.max()) + 1
    dev = z.device
    seq_t = torch.as_tensor(seq, device=dev)
    off_t = torch.as_tensor(offset, device=dev)
    values = torch.zeros(n_seq, length, z.shape[1], dtype=z.dtype, device=dev)
    values[seq_t, off_t] = z
    mask = torch.zeros(n_seq, length, dtype=torch.bool, device=dev)
    mask[seq_t, off_t] = True
    docs = torch.zeros(n_seq, length, dtype=torch.int64, device=dev)
    docs[seq_t, off_t] = torch.as_tensor(doc, device=dev)
    poss = torch.zeros(n_seq, length, dtype=torch.int64, device=dev)
    poss[seq_t, off_t] = torch.as_tensor(pos, device=dev)
    tids = torch.zeros(n_seq, length, dtype=torch.int64, device=dev)
    tid = index["token_id"].to_numpy()
    if tid.dtype == object or np.any(pd.isna(tid)):
        tids = None
    else:
        tids[seq_t, off_t] = torch.as_tensor(tid.astype(np.int64, copy=True), device=dev)
    return SiteBatch(values, mask, docs, poss, tids)


def map_sae(
    atlas: Any,
    sae_or_path: SparseAutoencoder | str | os.PathLike[str],
    *,
    name: str,
    site: str | None = None,
    batch_rows: int = 4096,
    device: str | torch.device | None = None,
    save: bool = True,
    metrics: dict[str, Any] | None = None,
    extra_files: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Add an SAE's features to an atlas as units of the site ``"<site>@sae:<name>"``.

    Args:
        atlas: an atlas directory (or :class:`~neuronatlas.atlas.Atlas`) with an activation
            store (built with ``keep_activations=True`` / ``--keep-activations``).
        sae_or_path: the SAE, or an SAE folder (SAELens layout).
        name: the SAE's name in the atlas (letters, digits, ``._-``).
        site: the source site (default: the SAE's ``hook_name`` when loaded from a folder, or
            the store's only site).
        batch_rows: rows encoded at a time (memory ~ ``batch_rows · d_sae`` floats).
        device: where to encode and accumulate (default CUDA when available).
        save: also save the SAE under ``analyses/sae/<name>/`` and record the analysis.
        metrics: evaluation figures to record with the analysis (``eval.json``).
        extra_files: more files to copy into the analysis folder (``{file name: source}``).

    Returns:
        The derived site's entry in ``atlas.json``.

    Raises:
        SAEError: the atlas has no store, the site is not in it, or widths differ.
    """
    from neuronatlas.atlas import open_atlas
    from neuronatlas.atlas._derived import append_site_units
    from neuronatlas.sae._io import load_sae, read_cfg
    from neuronatlas.units import SiteStats, annotate_units

    at = open_atlas(atlas)
    if isinstance(sae_or_path, SparseAutoencoder):
        sae = sae_or_path
    else:
        sae = load_sae(sae_or_path)
        site = site or (read_cfg(sae_or_path).get("metadata") or {}).get("hook_name")
    store = at.store()
    if site is None and len(store.sites) == 1:
        site = next(iter(store.sites))
    if site is None:
        raise SAEError(
            "map_sae needs the source site (site=...): the SAE does not name one and the "
            f"store holds {list(store.sites)}."
        )
    if site not in store.sites:
        raise SAEError(f"The atlas's store has no site {site!r}; it holds {list(store.sites)}.")
    if store.sites[site] != sae.d_in:
        raise SAEError(
            f"Site {site!r} has {store.sites[site]} units; the SAE reads d_in={sae.d_in}."
        )
    source = at.site_info(site)
    settings = at.manifest.get("settings", {})
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    sae = sae.to(dev).eval()
    vocab = at.query("select max(token_id) + 1 as v from tokens")["v"].iloc[0]
    stats = SiteStats(
        sae.d_sae,
        taxonomy=bool(settings.get("taxonomy", True)),
        taxonomy_options={
            "max_pos": int(settings.get("window") or 512),
            "vocab_size": int(vocab) if vocab == vocab and vocab else None,
        },
        top_k=int(settings.get("top_k", 20)),
        context=int(settings.get("context", 10)),
        threshold=float(settings.get("threshold", 0.0)),
        quantiles=bool(settings.get("quantiles", True)),
        higher_moments=bool(settings.get("moments", True)),
        device=dev,
    )
    with torch.no_grad():
        for values, index in _sequences(store, site, batch_rows):
            x = torch.as_tensor(np.array(values, dtype=np.float32), device=dev)
            stats.update(_site_batch(sae.encode(x), index))

    derived = sae_site_name(site, name)
    units, exemplars = _tables(at, derived, stats)
    entry = {
        "name": derived,
        "module": source.get("module"),
        "hook": source.get("hook"),
        "kind": "sae",
        "layer": source.get("layer"),
        "n_units": sae.d_sae,
        "source": site,
        "sae": {"name": name, "architecture": sae.architecture, "analysis": f"sae/{name}"},
    }
    units, _ = annotate_units(units)
    units = _name_tokens(at, units)
    if save:
        _save_analysis(at, sae, name, site, derived, metrics, extra_files)
    return append_site_units(at.path, entry, units, exemplars)


def _save_analysis(
    at: Any,
    sae: SparseAutoencoder,
    name: str,
    site: str,
    derived: str,
    metrics: dict[str, Any] | None,
    extra_files: dict[str, Path] | None,
) -> None:
    """Save the SAE in ``analyses/sae/<name>/``, keeping what an earlier entry recorded."""
    import json

    from neuronatlas.atlas import add_analysis, analysis_dir, list_analyses
    from neuronatlas.sae._io import save_sae

    reserved = ("key", "kind", "name", "path", "created", "files")
    old = next((e for e in list_analyses(at.path, "sae") if e.get("name") == name), {})
    folder = analysis_dir(at.path, "sae", name)
    save_sae(sae, folder, site=site, model_name=at.manifest["model"].get("name"))
    files = set(old.get("files", [])) | {"sae_weights.safetensors", "cfg.json"}
    for fname, src in (extra_files or {}).items():
        if Path(src).resolve() != (folder / fname).resolve():
            (folder / fname).write_bytes(Path(src).read_bytes())
        files.add(fname)
    meta = {k: v for k, v in old.items() if k not in reserved}
    meta.update(site=site, derived_site=derived, architecture=sae.architecture)
    meta["settings"] = sae.settings()
    if metrics is not None:
        clean = {k: v for k, v in metrics.items() if k != "freq"}
        (folder / "eval.json").write_text(json.dumps(clean, indent=2, default=float) + "\n")
        files.add("eval.json")
        meta["metrics"] = {**meta.get("metrics", {}), **clean}
    add_analysis(at.path, "sae", name, files=sorted(files), **meta)


def _tables(at: Any, site: str, stats: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The units and exemplars tables of the derived site (tokens joined in)."""
    cols = stats.result()
    n = stats.n_units
    units = pd.DataFrame({"site": [site] * n, "unit": np.arange(n, dtype=np.int32)})
    for key, value in cols.items():
        arr = np.asarray(value)
        units[key] = list(arr) if arr.ndim == 2 else arr
    ex = stats.exemplars()
    m = len(ex["unit"])
    ctx = np.asarray(ex["ctx_acts"], dtype=np.float32).reshape(m, -1)
    exemplars = pd.DataFrame(
        {
            "site": [site] * m,
            "unit": np.asarray(ex["unit"], dtype=np.int32),
            "rank": np.asarray(ex["rank"], dtype=np.int32),
            "activation": np.asarray(ex["activation"], dtype=np.float32),
            "doc": np.asarray(ex["doc"], dtype=np.int64),
            "pos": np.asarray(ex["pos"], dtype=np.int32),
            "ctx_start": np.asarray(ex["ctx_start"], dtype=np.int32),
            "ctx_acts": list(ctx),
        }
    )
    con = at.connect()
    try:  # the token at each exemplar (only the keys go through DuckDB: NaN context stays NaN)
        con.register("keys", exemplars[["doc", "pos"]].drop_duplicates())
        toks = con.execute(
            "select k.doc, k.pos, t.token_id, t.token from keys k "
            "left join tokens t on t.doc = k.doc and t.pos = k.pos"
        ).df()
    finally:
        con.close()
    toks = toks.astype({"doc": "int64", "pos": "int32"})
    exemplars = exemplars.merge(toks, on=["doc", "pos"], how="left")
    exemplars = exemplars.sort_values(["unit", "rank"], ignore_index=True)
    top = exemplars[exemplars["rank"] == 0].set_index("unit")["token"]
    units["top_token"] = units["unit"].map(top)
    return units, exemplars


def _name_tokens(at: Any, units: pd.DataFrame) -> pd.DataFrame:
    """``tok`` and ``bigram`` strings from the atlas's own token table (no tokenizer needed)."""
    if not {"tok_id", "bigram_id", "bigram_prev_id"} <= set(units.columns):
        return units
    ids = np.unique(units[["tok_id", "bigram_id", "bigram_prev_id"]].to_numpy(np.int64).ravel())
    ids = ids[ids >= 0]
    names = at.query(
        "select token_id, any_value(token) as token from tokens "
        "where token_id in (select unnest(?)) group by token_id",
        [ids.tolist()],
    )
    lookup = dict(zip(names["token_id"].tolist(), names["token"].tolist(), strict=True))
    out = units.copy()
    out["tok"] = out["tok_id"].map(lookup)
    prev = out["bigram_prev_id"].map(lookup).fillna("")
    out["bigram"] = (prev + " " + out["bigram_id"].map(lookup).fillna("")).where(
        out["bigram_id"] >= 0
    )
    return out
