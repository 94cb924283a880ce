"""Building an atlas: one streaming pass of a model over a corpus into the atlas tables.

``build_atlas`` is the one place where data, recording, statistics and the activation store meet.
It is resumable: the state of every accumulator and the tokens seen so far are checkpointed
every few batches, so a run that was killed continues where its last checkpoint left it, and
ends with the same tables an uninterrupted run writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

import neuronatlas
from neuronatlas.atlas import _format as fmt
from neuronatlas.atlas._atlas import Atlas
from neuronatlas.atlas._tables import (
    DOC_SCHEMA,
    TOKEN_SCHEMA,
    corpus_summary,
    docs_rows,
    label_units_table,
    tokens_from_ids,
    tokens_rows,
    write_tables,
)
from neuronatlas.errors import AtlasError, AtlasExistsError, DataError, NeuronAtlasError
from neuronatlas.sites import Site, resolve_sites
from neuronatlas.stats import SiteBatch
from neuronatlas.units import SiteStats

__all__ = ["Progress", "build_atlas"]

ProgressFn = Callable[["Progress"], None]


@dataclass
class Progress:
    """What a build reports after each batch (for progress bars)."""

    tokens: int
    total: int | None
    batches: int
    forward_s: float
    elapsed_s: float
    resumed_from: int = 0


@dataclass
class _Run:
    """Mutable state of one build, checkpointed to ``.partial/state.pt``."""

    batches_done: int = 0
    tokens_done: int = 0
    forward_s: float = 0.0
    record_s: float = 0.0
    parts: list[str] = field(default_factory=list)


def build_atlas(
    model: nn.Module | str | Any,
    data: Any = None,
    *,
    out: str | os.PathLike[str],
    sites: str | Iterable[str | Site] = "mlp",
    tokenizer: Any = None,
    top_k: int = 20,
    context: int = 10,
    threshold: float = 0.0,
    quantiles: bool = True,
    moments: bool = True,
    taxonomy: bool = True,
    thresholds: dict[str, float] | None = None,
    window: int = 256,
    batch_size: int = 32,
    max_tokens: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    keep_activations: bool = False,
    store_dtype: str = "float16",
    text_column: str = "text",
    force: bool = False,
    checkpoint_every: int = 16,
    progress: ProgressFn | None = None,
) -> Atlas:
    """Record ``model`` over ``data`` in one pass and write an atlas to ``out``.

    Args:
        model: an ``nn.Module`` (Hugging Face or plain), a model spec for
            :func:`neuronatlas.models.load_model` (``None``/``"minilm"`` for the packaged MiniLM, a
            local folder, a hub id, or ``package.module:factory``), or a ``LoadedModel``.
        data: for models with a tokenizer, a corpus (``None`` = the documentation that ships with
            Python, a list of strings, a .txt file or folder, a JSONL/CSV/Parquet file with a
            ``text_column``, or a Hugging Face dataset); for plain modules, an iterable of input
            tensors, of tuples of tensors, or of dicts of keyword tensors, or one big tensor.
        out: the atlas directory to write.
        sites: presets (``mlp``, ``resid``), module names or globs (see docs/sites.md).
        tokenizer: the tokenizer, when ``model`` is an ``nn.Module`` fed text.
        top_k: exemplars kept per unit. context: activations kept on each side of an exemplar.
        threshold: the activity threshold of ``frac_above``.
        quantiles, moments: turn the quantile sketch / higher moments off for speed.
        taxonomy: also collect what the unit labels need (positional, token and bigram
            detectors, massive activations) and label every unit (see docs/taxonomy.md).
        thresholds: overrides of the taxonomy's default thresholds, by name.
        window: the longest sequence fed to the model, in tokens (long documents are split).
        batch_size: sequences per forward pass. max_tokens: stop after this many tokens.
        device, dtype: where and in which precision to run the model (``None`` = as it is).
        keep_activations: also write the raw activations to an activation store (``out/store``).
        store_dtype: dtype of the activation store (``float32``, ``float16``, ``bfloat16``).
        force: overwrite an existing atlas built with other settings.
        checkpoint_every: batches between checkpoints of an interruptible build.
        progress: called with a :class:`Progress` after each batch.

    Returns:
        The finished :class:`~neuronatlas.atlas.Atlas`.

    Raises:
        AtlasExistsError: ``out`` holds an atlas built with other settings and ``force`` is False.
        DataError, ModelLoadError, SiteError: bad corpus, model or sites, with what to do.

    Examples:
        >>> from neuronatlas import build_atlas
        >>> atlas = build_atlas(None, None, out="atlases/minilm", max_tokens=20_000)  # doctest: +SKIP
        >>> atlas.units.groupby("layer").frac_active.mean()  # doctest: +SKIP
    """
    from neuronatlas.data import load_corpus, load_tensors, tensor_batches, text_batches
    from neuronatlas.models import LoadedModel, load_model
    from neuronatlas.models._load import as_dtype

    started = time.perf_counter()
    out = Path(out)
    _check_args(
        top_k=top_k,
        context=context,
        window=window,
        batch_size=batch_size,
        max_tokens=max_tokens,
        checkpoint_every=checkpoint_every,
    )

    # -- model -----------------------------------------------------------------------------------
    if isinstance(model, LoadedModel):
        loaded = model
    elif model is None or isinstance(model, (str, os.PathLike, nn.Module)):
        loaded = load_model(model, device=device or "cpu", dtype=dtype)
    else:
        raise NeuronAtlasError(
            "build_atlas needs a model: an nn.Module, a model spec string (a local folder, a hub "
            f"id or 'package.module:factory'), or None for the packaged MiniLM; got "
            f"{type(model).__name__}."
        )
    net, tok = loaded.model, tokenizer if tokenizer is not None else loaded.tokenizer
    if device is not None or dtype is not None:
        net = net.to(device=device, dtype=as_dtype(dtype))
    net.eval()
    dev = _device_of(net)
    resolved = resolve_sites(net, sites)

    # -- data ------------------------------------------------------------------------------------
    if tok is not None:
        corpus = load_corpus(data, text_column=text_column)
        corpus_desc = corpus.description
        batches_fn: Callable[[int], Iterator[Any]] = lambda start: text_batches(  # noqa: E731
            corpus, tok, window=window, batch_size=batch_size, max_tokens=max_tokens
        ).batches(start)
    else:
        if data is None:
            raise DataError(
                "This model has no tokenizer, so the data must be input tensors: an iterable of "
                "tensors, tuples or dicts of tensors, or a .pt/.npy/.npz/.safetensors file. Got "
                "nothing. Pass tokenizer=... (or a Hugging Face model folder) to feed text."
            )
        if isinstance(data, (str, os.PathLike)):
            corpus_desc = f"input tensors from {Path(data).name}"
            data = load_tensors(data)
        else:
            corpus_desc = f"{type(data).__name__} of input tensors"
        if hasattr(data, "batches"):  # named inputs read from a file
            data = data.batches(batch_size)
        batches_fn = lambda start: itertools.islice(  # noqa: E731
            tensor_batches(data, batch_size=batch_size), start, None
        )

    settings = {
        "sites": [s.name for s in resolved],
        "top_k": top_k,
        "context": context,
        "threshold": float(threshold),
        "quantiles": quantiles,
        "moments": moments,
        "taxonomy": taxonomy,
        "thresholds": dict(thresholds or {}),
        "window": window,
        "batch_size": batch_size,
        "max_tokens": max_tokens,
        "dtype": str(next(net.parameters(), torch.empty(0)).dtype).removeprefix("torch."),
        "keep_activations": keep_activations,
        "store_dtype": store_dtype if keep_activations else None,
        "model_sha256": loaded.info.weights_sha256,
        "corpus": corpus_desc,
        "corpus_identity": _data_identity(data, corpus if tok is not None else None),
    }
    partial = out / fmt.PARTIAL
    run = _prepare_out(out, settings, force=force)
    if run is None:  # already built with these settings
        return Atlas(out)

    manifest = {
        "format": fmt.FORMAT,
        "version": fmt.VERSION,
        "complete": False,
        "neuronatlas_version": neuronatlas.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": loaded.info.as_dict(),
        "corpus": {"description": corpus_desc},
        "sites": [
            {
                "name": s.name,
                "module": s.module,
                "hook": s.hook,
                "kind": s.kind,
                "layer": s.layer,
                "n_units": None,
            }
            for s in resolved
        ],
        "settings": settings,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": str(dev),
        },
    }
    fmt.write_json_atomic(out / fmt.MANIFEST, manifest)

    # -- the pass --------------------------------------------------------------------------------
    stats: dict[str, SiteStats] = {}
    if run.batches_done:
        state = torch.load(partial / "state.pt", map_location=dev, weights_only=True)
        stats = {k: SiteStats.from_state_dict(v, device=dev) for k, v in state["stats"].items()}

    def make_stats(n: int) -> SiteStats:
        return SiteStats(
            n,
            taxonomy=taxonomy,
            taxonomy_options={
                "max_pos": window,
                "vocab_size": len(tok) if tok is not None else None,
            },
            top_k=top_k,
            context=context,
            threshold=threshold,
            quantiles=quantiles,
            higher_moments=moments,
            device=dev,
        )

    store = _BuildStore(out / fmt.STORE, store_dtype, resume=run.batches_done > 0)
    if not keep_activations:
        store = None
    # a resumed store may be behind the statistics (its commits land on whole chunks): replay
    # the batches in between for the store alone
    start = min(run.batches_done, store.start) if store is not None else run.batches_done

    tokens_buf: list[pa.RecordBatch] = []
    docs_buf: list[pa.RecordBatch] = []
    resumed_from = run.tokens_done
    interrupted = True
    consistent = True  # False while a batch is half folded in: no checkpoint may be taken then
    try:
        from neuronatlas.record import Recorder

        with Recorder(net, resolved) as rec, torch.inference_mode():
            for i, batch in enumerate(batches_fn(start), start):  # skips what was done
                batch = batch.to(dev)
                t0 = time.perf_counter()
                net(*batch.args, **batch.kwargs)
                _sync(dev)
                t1 = time.perf_counter()
                acts = rec.pop()
                if i < run.batches_done:  # only the store is behind here
                    store.append(_store_rows(batch, resolved, acts))
                    continue
                consistent = False
                _record_batch(batch, resolved, acts, stats, make_stats)
                if store is not None:
                    store.append(_store_rows(batch, resolved, acts))
                _sync(dev)
                run.record_s += time.perf_counter() - t1
                run.forward_s += t1 - t0
                run.batches_done += 1
                run.tokens_done += batch.n_tokens
                if batch.windows:
                    tokens_buf.append(tokens_rows(batch.windows))
                    docs_buf.append(docs_rows(batch.windows))
                elif batch.token_id is not None:
                    tokens_buf.append(tokens_from_ids(batch, tok))
                consistent = True
                if run.batches_done % checkpoint_every == 0:
                    _checkpoint(partial, run, stats, tokens_buf, docs_buf, store)
                    tokens_buf, docs_buf = [], []
                if progress is not None:
                    progress(
                        Progress(
                            run.tokens_done,
                            max_tokens,
                            run.batches_done,
                            run.forward_s,
                            time.perf_counter() - started,
                            resumed_from,
                        )
                    )
        interrupted = False
    finally:
        if interrupted and consistent and run.batches_done:
            # keep what we have: the next run with the same settings resumes from here
            with contextlib.suppress(Exception):
                _checkpoint(partial, run, stats, tokens_buf, docs_buf, store)
        elif interrupted and run.batches_done == 0:
            shutil.rmtree(out, ignore_errors=True)  # nothing to resume: leave no half atlas

    if run.tokens_done == 0 or not stats:
        shutil.rmtree(out, ignore_errors=True)  # only the manifest and .partial/ we created
        raise DataError(
            f"The corpus gave no tokens to record ({corpus_desc}). Check that it holds non-empty "
            "documents (and the text column) or input tensors."
        )
    _flush_parts(partial, run, tokens_buf, docs_buf)
    if store is not None:
        store.close(run.batches_done)

    # -- tables ----------------------------------------------------------------------------------
    t_write = time.perf_counter()
    nonfinite = write_tables(out, partial, resolved, stats, run.parts)
    if taxonomy:
        manifest["taxonomy"] = label_units_table(out, net, resolved, tok, thresholds)
        manifest["labels"] = sorted(manifest["taxonomy"].get("labels", {}))
    for entry in manifest["sites"]:
        entry["n_units"] = stats[entry["name"]].n_units
    manifest["corpus"].update(corpus_summary(out))
    manifest["nonfinite"] = nonfinite
    if store is not None and store.store is not None:
        manifest["store"] = {"path": fmt.STORE, "dtype": store_dtype, "n_rows": store.store.n_rows}
    total = time.perf_counter() - started
    manifest["timings"] = {
        "forward_s": round(run.forward_s, 3),
        "record_s": round(run.record_s, 3),
        "write_s": round(time.perf_counter() - t_write, 3),
        "total_s": round(total, 3),
        "tokens_per_s": round(run.tokens_done / max(total, 1e-9), 1),
        "resumed_at_tokens": resumed_from or None,
    }
    manifest["complete"] = True
    fmt.write_json_atomic(out / fmt.MANIFEST, manifest)
    shutil.rmtree(partial, ignore_errors=True)
    return Atlas(out)


# -- the hot path ------------------------------------------------------------------------------


def _record_batch(
    batch: Any,
    sites: list[Site],
    acts: dict[str, torch.Tensor],
    stats: dict[str, SiteStats],
    make_stats: Callable[[int], SiteStats],
) -> None:
    """Fold one batch of every site into its accumulators."""
    from neuronatlas.data import bookkeeping_for

    books: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for site in sites:
        values = acts[site.name]
        n_pos = int(values.shape[1])
        if n_pos not in books:
            books[n_pos] = bookkeeping_for(batch, n_pos)
        doc, pos, mask = books[n_pos]
        acc = stats.get(site.name)
        if acc is None:
            acc = stats[site.name] = make_stats(int(values.shape[-1]))
        tid = (
            batch.token_id if batch.token_id is not None and n_pos == batch.mask.shape[1] else None
        )
        acc.update(SiteBatch(values, mask, doc, pos, tid))


def _store_rows(batch: Any, sites: list[Site], acts: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The rows of one batch for the activation store: every site at the batch's tokens."""
    n_pos = int(batch.mask.shape[1])
    for site in sites:
        if int(acts[site.name].shape[1]) != n_pos:
            raise NeuronAtlasError(
                f"--keep-activations stores one row per token for every site, but site "
                f"{site.name!r} has {int(acts[site.name].shape[1])} positions where the batch "
                f"has {n_pos}. Store sites with one activation per token, or map without it."
            )
    tid = batch.token_id
    return {
        "acts": {s.name: acts[s.name] for s in sites},
        "doc": batch.doc,
        "pos": batch.pos,
        "token_id": tid,
        "mask": batch.mask,
    }


class _BuildStore:
    """The activation store of a build, created at its first batch (when unit counts are known).

    ``start`` is the number of batches whose rows a previous, interrupted run committed.
    """

    def __init__(self, path: Path, dtype: str, *, resume: bool) -> None:
        from neuronatlas.store import ActivationStore

        self.path, self.dtype, self.store, self.start = path, dtype, None, 0
        if resume and (path / "store.json").exists():
            self.store = ActivationStore.open(path, mode="a", dtype=dtype)
            cursor = self.store.cursor
            self.start = int(cursor["batches_done"]) if cursor else 0
        elif path.exists():
            shutil.rmtree(path)

    def append(self, rows: dict[str, Any]) -> None:
        from neuronatlas.store import ActivationStore

        if self.store is None:
            sites = {name: int(v.shape[-1]) for name, v in rows["acts"].items()}
            self.store = ActivationStore.create(self.path, sites=sites, dtype=self.dtype)
        self.store.append(
            rows["acts"], rows["doc"], rows["pos"], rows["token_id"], mask=rows["mask"]
        )

    def commit(self, batches_done: int) -> None:
        if self.store is not None:
            self.store.commit({"batches_done": batches_done})

    def close(self, batches_done: int) -> None:
        if self.store is not None:
            self.store.close({"batches_done": batches_done})


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# -- checkpoints and resume ------------------------------------------------------------------


def _prepare_out(out: Path, settings: dict[str, Any], *, force: bool) -> _Run | None:
    """Decide between a fresh build, a resume, and nothing to do; refuse a settings clash."""
    partial = out / fmt.PARTIAL
    manifest_file = out / fmt.MANIFEST
    if out.exists() and not out.is_dir():
        raise AtlasError(f"The output path {str(out)!r} exists and is not a directory.")
    if manifest_file.exists():
        try:
            old = json.loads(manifest_file.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        same = old.get("settings") == json.loads(json.dumps(settings))
        if not same and not force:
            diff = sorted(
                k
                for k in set(settings) | set(old.get("settings", {}))
                if old.get("settings", {}).get(k) != settings.get(k)
            )
            raise AtlasExistsError(
                f"An atlas built with other settings is already at {str(out)!r} (differing: "
                f"{', '.join(diff) or 'format'}). Pass --force (force=True) to overwrite it, or "
                "choose another --out."
            )
        if same and old.get("complete"):
            return None
        if same and (partial / "state.pt").exists():
            state = torch.load(partial / "state.pt", map_location="cpu", weights_only=True)
            run = _Run(**state["run"])
            for stray in partial.glob("*.parquet"):  # written after the last checkpoint
                if stray.name not in run.parts:
                    stray.unlink()
            return run
    elif out.exists() and any(out.iterdir()) and not force:
        raise AtlasExistsError(
            f"The output directory {str(out)!r} is not empty and holds no atlas. Choose an empty "
            "or new directory, or pass --force (force=True) to replace its contents."
        )
    if out.exists():
        shutil.rmtree(out)
    partial.mkdir(parents=True)
    return _Run()


def _checkpoint(
    partial: Path,
    run: _Run,
    stats: dict[str, SiteStats],
    tokens_buf: list[pa.RecordBatch],
    docs_buf: list[pa.RecordBatch],
    store: Any,
) -> None:
    """Persist everything up to ``run.batches_done``: token parts, store rows, then the state."""
    _flush_parts(partial, run, tokens_buf, docs_buf)
    tokens_buf.clear()
    docs_buf.clear()
    if store is not None:
        store.commit(run.batches_done)
    state = {"run": run.__dict__.copy(), "stats": {k: v.state_dict() for k, v in stats.items()}}
    tmp = partial / "state.pt.tmp"
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, partial / "state.pt")


def _flush_parts(
    partial: Path, run: _Run, tokens_buf: list[pa.RecordBatch], docs_buf: list[pa.RecordBatch]
) -> None:
    for kind, buf, schema in (
        ("tokens", tokens_buf, TOKEN_SCHEMA),
        ("docs", docs_buf, DOC_SCHEMA),
    ):
        if not buf:
            continue
        name = f"{kind}-{run.batches_done:08d}.parquet"
        pq.write_table(pa.Table.from_batches(buf, schema=schema), partial / name)
        if name not in run.parts:
            run.parts.append(name)


def _data_identity(data: Any, corpus: Any) -> str:
    """What tells this corpus from another without reading it through the model.

    In-memory documents and tensors are hashed; files and folders are identified by path, size
    and modification time (as build tools do); other sources by their description. A build
    whose settings and corpus identity match an existing atlas resumes it or returns it.
    """
    from neuronatlas.data import corpus_fingerprint

    h = hashlib.sha256()
    if isinstance(data, (list, tuple)) and corpus is not None:
        return "sha256:" + corpus_fingerprint(corpus)
    if isinstance(data, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in data):
        for t in data:
            h.update(str((tuple(t.shape), t.dtype)).encode())
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return "sha256:" + h.hexdigest()
    if isinstance(data, torch.Tensor):
        h.update(data.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return "sha256:" + h.hexdigest()
    if isinstance(data, (str, os.PathLike)) and Path(data).exists():
        root = Path(data).resolve()
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            st = f.stat()
            h.update(f"{f.relative_to(root.parent)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return f"files:{root}:" + h.hexdigest()
    return "description:" + (corpus.description if corpus is not None else type(data).__name__)


# -- argument checks -------------------------------------------------------------------------


def _check_args(**kwargs: int | None) -> None:
    for name, value in kwargs.items():
        if value is None and name == "max_tokens":
            continue
        low = 0 if name == "context" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise NeuronAtlasError(
                f"The {name!r} parameter of build_atlas must be an int >= {low}. Got {value!r}."
            )


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
