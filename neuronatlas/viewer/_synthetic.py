"""Write a synthetic atlas: every file of the atlas format, from a simulated model.

A synthetic atlas is useful wherever a real one is too slow or too large to build: demos of the
viewer, its tests and its benchmarks. The "model" is a simulation, but the tables are computed
from its activations exactly as an atlas builder would: moments, extremes, activity, quantiles,
histograms, top-k exemplars with their context activations and the tokens they sit in. So the
tables are consistent with each other (rank 0's activation is the unit's ``max``, histogram
counts sum to ``count``, ...) and tests can check the viewer against them.

Each site holds ``n_units`` units whose pre-activation at a position is a random projection of
the token's embedding plus a positional term plus noise; a few units are made into token
detectors, positional units, dead units and massive-activation units, so that labels and the
overview have something to show. MLP sites apply GELU (so activations have the small negative
tail of real MLP neurons); residual sites do not.

Examples:
    >>> import tempfile, duckdb
    >>> path = write_synthetic_atlas(tempfile.mkdtemp() + "/atlas", n_layers=2, n_units=8)
    >>> duckdb.connect().execute(f"select count(*) from '{path}/units.parquet'").fetchall()
    [(16,)]
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["HOSTILE_TOKENS", "write_synthetic_atlas"]

#: Tokens that must render as text, never as markup (used by the viewer's security tests).
HOSTILE_TOKENS = (
    "<script>alert(1)</script>",
    '" onmouseover="alert(1)',
    "<img src=x onerror=alert(1)>",
    "&amp;&lt;b&gt;",
)

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "that",
    "with",
    "as",
    "on",
    "by",
    "it",
    "this",
    "are",
    "be",
    "from",
    "or",
    "an",
    "at",
    "not",
    "which",
    "can",
    "you",
    "function",
    "return",
    "value",
    "module",
    "class",
    "object",
    "list",
    "string",
    "file",
    "default",
    "none",
    "type",
    "name",
    "data",
    "error",
    "import",
    "call",
    "method",
    "argument",
    "number",
    "set",
    "key",
    "dict",
    "path",
    "time",
    "code",
    "line",
    "system",
    "use",
    "new",
    "when",
    "if",
    "else",
    "loop",
    "while",
    "true",
    "false",
    "python",
    "library",
    "test",
    "example",
    "first",
    "each",
    "all",
    "other",
    "more",
    "than",
    "one",
    "two",
    "will",
    "may",
    "must",
    "should",
    "has",
    "have",
    "been",
    "was",
    "were",
    "its",
    "their",
    "only",
    "also",
    "into",
    "used",
    "returns",
    "raises",
    "given",
    "see",
    "note",
    "version",
    "changed",
    "added",
    "deprecated",
    "option",
    "mode",
    "buffer",
    "stream",
    "socket",
    "thread",
    "process",
    "lock",
    "queue",
    "event",
    "signal",
    "handler",
    "context",
    "manager",
    "iterator",
    "generator",
    "decorator",
    "attribute",
    "instance",
    "subclass",
    "exception",
    "warning",
    "format",
    "encoding",
    "bytes",
    "integer",
    "float",
    "tuple",
    "sequence",
    "mapping",
    "index",
    "slice",
    "range",
    "length",
    "size",
    "count",
    "sum",
    "maximum",
    "minimum",
    "sort",
    "order",
    "reverse",
    "copy",
    "update",
    "clear",
    "remove",
    "insert",
    "append",
    "extend",
    "pop",
    "get",
    "keys",
    "values",
    "items",
    "open",
    "close",
    "read",
    "write",
    "flush",
    "seek",
    "tell",
    "mode",
    "text",
    "binary",
    "newline",
    "directory",
    "environment",
    "variable",
    "command",
    "shell",
    "user",
    "group",
    "permission",
    "owner",
    "date",
    "year",
    "month",
    "day",
    "hour",
    "second",
    "zone",
]
_SPLIT = {"function": "##tion", "directory": "##ory", "generator": "##ator", "exception": "##tion"}
_PUNCT = (".", ",", "(", ")", ":", "'", '"', "=", "[", "]")
_SOURCES = ("library/os.rst", "library/json.rst", "library/re.rst", "tutorial/classes.rst")


def _vocabulary(token_style: str, hostile: bool) -> tuple[list[str], list[str], dict[str, int]]:
    """Return (token strings, specials, word -> first token id)."""
    if token_style == "wordpiece":
        specials = ["[PAD]", "[CLS]", "[SEP]"]
        pieces = [w[: -len(_SPLIT[w]) + 2] if w in _SPLIT else w for w in _WORDS]
        tokens = specials + pieces + sorted(set(_SPLIT.values())) + list(_PUNCT)
    elif token_style == "bytelevel":
        specials = ["<|endoftext|>"]
        tokens = [*specials, *(f"Ġ{w}" for w in _WORDS), *_PUNCT, "Ċ"]
    else:
        raise ValueError(f"token_style must be 'wordpiece' or 'bytelevel'; got {token_style!r}.")
    if hostile:
        tokens += list(HOSTILE_TOKENS)
    ids = {t: i for i, t in enumerate(tokens)}
    return tokens, specials, ids


def _corpus(
    rng: np.random.Generator, n_docs: int, doc_len: int, token_style: str, hostile: bool
) -> tuple[np.ndarray, list[str], list[str]]:
    """Return ``(doc, pos)`` token ids (int64), the token strings and the special tokens."""
    tokens, specials, ids = _vocabulary(token_style, hostile)
    n_special = len(specials)
    ordinary = np.arange(n_special, len(tokens) - (len(HOSTILE_TOKENS) if hostile else 0))
    ranks = np.arange(1, len(ordinary) + 1, dtype=np.float64)
    zipf = 1.0 / ranks**1.1
    ids_ = rng.choice(ordinary, size=(n_docs, doc_len), p=zipf / zipf.sum())
    if token_style == "wordpiece":
        ids_[:, 0] = ids["[CLS]"]
        ids_[:, -1] = ids["[SEP]"]
    else:
        ids_[:, 0] = ids["<|endoftext|>"]
    if hostile:  # sprinkle the hostile tokens through a few documents
        for j, tok in enumerate(HOSTILE_TOKENS):
            for d in range(j, n_docs, max(1, n_docs // 6)):
                ids_[d, 3 + (7 * d + 5 * j) % max(1, doc_len - 6)] = ids[tok]
    return ids_.astype(np.int64), tokens, specials


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * (x * x * x))))


def _site_names(n_layers: int, kinds: Sequence[str]) -> list[dict]:
    sites = []
    for layer in range(n_layers):
        for kind in kinds:
            if kind == "mlp":
                module, hook = f"encoder.layer.{layer}.output.dense", "input"
                name = f"{module}:input"
            elif kind == "resid":
                module, hook, name = f"encoder.layer.{layer}", "output", f"encoder.layer.{layer}"
            else:
                raise ValueError(f"kinds must hold 'mlp' or 'resid'; got {kind!r}.")
            sites.append({"name": name, "module": module, "hook": hook, "kind": kind})
            sites[-1]["layer"] = layer
    return sites


def _simulate(
    rng: np.random.Generator,
    tok: np.ndarray,
    n_vocab: int,
    n_units: int,
    kind: str,
    detectors: dict[int, np.ndarray],
) -> np.ndarray:
    """Simulate units of one site: ``(n_docs * doc_len, unit)`` float32 activations."""
    n_docs, doc_len = tok.shape
    d = 12
    emb = rng.standard_normal((n_vocab, d)).astype(np.float32)
    w = (rng.standard_normal((d, n_units)) / math.sqrt(d)).astype(np.float32)
    pos = np.arange(doc_len, dtype=np.float32)
    pos_feat = np.stack([np.cos(pos / doc_len * np.pi * k) for k in (1, 2, 4)], axis=1)
    q = (0.3 * rng.standard_normal((3, n_units))).astype(np.float32)
    bias = (rng.normal(-0.6, 0.5, n_units)).astype(np.float32)
    scale = rng.lognormal(0.0, 0.35, n_units).astype(np.float32)
    flat_tok = tok.reshape(-1)
    g = emb[flat_tok] @ w + np.tile(pos_feat @ q, (n_docs, 1)) + bias
    g += 0.4 * rng.standard_normal(g.shape).astype(np.float32)
    g *= scale
    kinds = np.full(n_units, "generic", dtype=object)
    u = rng.permutation(n_units)
    n = max(1, n_units // 12)
    token_units, pos_units, dead_units = u[:n], u[n : 2 * n], u[2 * n : 3 * n]
    massive_units = u[3 * n : 3 * n + max(1, n // 3)]
    for unit in token_units:
        pref = detectors.get(int(unit), rng.choice(np.arange(n_vocab), size=2, replace=False))
        g[:, unit] += 4.0 * np.isin(flat_tok, pref) * scale[unit]
        kinds[unit] = "token"
    for unit, pref in detectors.items():  # forced detectors (e.g. for the hostile tokens)
        if kinds[unit] != "token":
            g[:, unit] += 5.0 * np.isin(flat_tok, pref) * scale[unit]
            kinds[unit] = "token"
    flat_pos = np.tile(np.arange(doc_len), n_docs)
    for unit in pos_units:
        if kinds[unit] == "generic":
            g[:, unit] += 3.0 * np.exp(-flat_pos / 2.0) * scale[unit]
            kinds[unit] = "positional"
    for unit in dead_units:
        if kinds[unit] == "generic":
            g[:, unit] = -np.abs(g[:, unit]) - 3.0
            kinds[unit] = "dead"
    for unit in massive_units:
        if kinds[unit] == "generic":
            g[:, unit] += 60.0 * (
                (flat_pos == 0) & (np.repeat(np.arange(n_docs), doc_len) % 3 == 0)
            )
            kinds[unit] = "massive"
    del kinds
    acts = _gelu(g) if kind == "mlp" else g
    return acts.astype(np.float32)


def _unit_stats(acts: np.ndarray, n_bins: int, threshold: float) -> dict[str, np.ndarray]:
    """Per-unit statistics of ``(n, unit)`` activations that may contain NaN."""
    finite = np.isfinite(acts)
    all_finite = bool(finite.all())
    count = finite.sum(0).astype(np.int64)
    x = acts.astype(np.float64) if all_finite else np.where(finite, acts, 0.0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(0) / count
        dev = x - mean
        if not all_finite:
            dev[~finite] = 0.0
        d2 = dev * dev
        var = d2.sum(0) / count
        std = np.sqrt(var)
        skew = (d2 * dev).sum(0) / count / std**3
        kurt = (d2 * d2).sum(0) / count / var**2 - 3.0
    del d2, dev
    if all_finite:
        lo, hi = acts.min(0).astype(np.float64), acts.max(0).astype(np.float64)
        q = np.quantile(acts, [0.5, 0.9, 0.99, 0.999], axis=0)
    else:
        lo = np.where(finite, acts, np.inf).min(0).astype(np.float64)
        hi = np.where(finite, acts, -np.inf).max(0).astype(np.float64)
        q = np.nanquantile(np.where(finite, acts, np.nan), [0.5, 0.9, 0.99, 0.999], axis=0)
    width = np.where(hi > lo, hi - lo, 1.0)
    edges = lo[:, None] + np.linspace(0.0, 1.0, n_bins + 1)[None, :] * width[:, None]
    idx = np.clip(((x - lo) / width * n_bins).astype(np.int64), 0, n_bins - 1)
    idx += np.arange(acts.shape[1]) * n_bins
    if not all_finite:
        idx[~finite] = -1
    counts = np.bincount(idx[idx >= 0], minlength=acts.shape[1] * n_bins)
    return {
        "count": count,
        "mean": mean,
        "std": std,
        "var": var,
        "skew": skew,
        "kurtosis": kurt,
        "min": lo,
        "max": hi,
        "frac_active": ((x > 0) & finite).sum(0) / count,
        "frac_above": ((x > threshold) & finite).sum(0) / count,
        "p50": q[0],
        "p90": q[1],
        "p99": q[2],
        "p999": q[3],
        "hist_edges": edges,
        "hist_counts": counts.reshape(acts.shape[1], n_bins),
        "n_nan": np.isnan(acts).sum(0).astype(np.int64),
        "n_posinf": np.isposinf(acts).sum(0).astype(np.int64),
        "n_neginf": np.isneginf(acts).sum(0).astype(np.int64),
    }


def _top_k(acts: np.ndarray, k: int) -> np.ndarray:
    """``(unit, k)`` flat row indices of the k largest finite activations per unit.

    Ties: larger activation first, then smaller row (= smaller doc, then smaller pos).
    """
    x = np.where(np.isfinite(acts), acts, -np.inf)
    n, n_units = x.shape
    k = min(k, n)
    m = min(n, 2 * k + 8)  # candidates, with room for ties at the partition boundary
    if m < n:
        cand = np.argpartition(-x, m - 1, axis=0)[:m]
    else:
        cand = np.broadcast_to(np.arange(n)[:, None], (n, n_units))
    vals = np.take_along_axis(x, cand, axis=0)
    order = np.lexsort((cand, -vals), axis=0)
    return np.take_along_axis(cand, order, axis=0)[:k].T.copy()


def _tables(
    acts: np.ndarray,
    first: int,
    site: dict,
    flat_tok: np.ndarray,
    flat_doc: np.ndarray,
    flat_pos: np.ndarray,
    vocab_arr: np.ndarray,
    doc_len: int,
    top_k: int,
    context: int,
    n_bins: int,
    labels: bool,
) -> tuple[pa.Table, pa.Table, dict[str, np.ndarray]]:
    """Units and exemplars rows of a block of units ``first, first + 1, ...`` of one site."""
    n_units = acts.shape[1]
    stats = _unit_stats(acts, n_bins, threshold=0.0)
    top = _top_k(acts, top_k)  # (unit, k)
    k = top.shape[1]
    rows = top.reshape(-1)
    local = np.repeat(np.arange(n_units), k)
    e_doc, e_pos = flat_doc[rows], flat_pos[rows]
    ctx_start = np.maximum(e_pos - context, 0)
    ctx_end = np.minimum(e_pos + context, doc_len - 1)
    ctx = [
        acts[d * doc_len + a : d * doc_len + b + 1, unit].tolist()
        for d, a, b, unit in zip(e_doc, ctx_start, ctx_end, local, strict=True)
    ]
    exemplars = pa.table(
        {
            "site": pa.array([site["name"]] * len(rows), pa.string()),
            "unit": pa.array(local + first, pa.int32()),
            "rank": pa.array(np.tile(np.arange(k), n_units), pa.int32()),
            "activation": pa.array(acts[rows, local], pa.float32()),
            "doc": pa.array(e_doc, pa.int64()),
            "pos": pa.array(e_pos, pa.int32()),
            "token_id": pa.array(flat_tok[rows], pa.int64()),
            "token": pa.array(vocab_arr[flat_tok[rows]].tolist(), pa.string()),
            "ctx_start": pa.array(ctx_start, pa.int32()),
            "ctx_acts": pa.array(ctx, pa.list_(pa.float32())),
        }
    )
    top_tok = flat_tok[top]  # (unit, k)
    cols: dict[str, pa.Array] = {
        "site": pa.array([site["name"]] * n_units, pa.string()),
        "layer": pa.array([site["layer"]] * n_units, pa.int32()),
        "unit": pa.array(np.arange(first, first + n_units), pa.int32()),
    }
    for name in ("count", "n_nan", "n_posinf", "n_neginf"):
        cols[name] = pa.array(stats[name], pa.int64())
    for name in ("mean", "std", "var", "skew", "kurtosis", "min", "max", "frac_active",
                 "frac_above", "p50", "p90", "p99", "p999"):  # fmt: skip
        cols[name] = pa.array(stats[name], pa.float64())
    cols["hist_edges"] = pa.array(stats["hist_edges"].tolist(), pa.list_(pa.float64()))
    cols["hist_counts"] = pa.array(stats["hist_counts"].tolist(), pa.list_(pa.int64()))
    cols["top_token"] = pa.array(vocab_arr[top_tok[:, 0]].tolist(), pa.string())
    if labels:
        token_score = (top_tok == top_tok[:, :1]).mean(1)
        pos_score = (flat_pos[top] <= 1).mean(1)
        absmax = np.maximum(np.abs(stats["min"]), np.abs(stats["max"]))
        massive_score = absmax / np.maximum(np.abs(stats["p99"]), 1e-6)
        cols["label_dead"] = pa.array(stats["frac_active"] == 0.0, pa.bool_())
        cols["label_token"] = pa.array((token_score >= 0.9) & (stats["frac_active"] > 0))
        cols["score_token"] = pa.array(token_score, pa.float64())
        cols["label_positional"] = pa.array(pos_score >= 0.8, pa.bool_())
        cols["score_positional"] = pa.array(pos_score, pa.float64())
        cols["label_massive"] = pa.array((massive_score > 20) & (absmax > 10), pa.bool_())
        cols["score_massive"] = pa.array(massive_score, pa.float64())
    return pa.table(cols), exemplars, stats


def write_synthetic_atlas(
    out: str | Path,
    *,
    n_layers: int = 4,
    n_units: int = 96,
    kinds: Sequence[str] = ("mlp",),
    n_docs: int = 48,
    doc_len: int = 64,
    top_k: int = 10,
    context: int = 6,
    n_bins: int = 32,
    token_style: str = "wordpiece",
    labels: bool = True,
    hostile: bool = False,
    seed: int = 0,
) -> Path:
    """Simulate a small encoder and write its atlas to ``out`` (created; must not exist).

    Args:
        out: directory to create.
        n_layers: number of blocks; each contributes one site per entry of ``kinds``.
        n_units: units per site.
        kinds: site kinds per block: ``"mlp"`` (named ``encoder.layer.N.output.dense:input``,
            GELU activations) and/or ``"resid"`` (named ``encoder.layer.N``).
        n_docs, doc_len: corpus size; every doc has exactly ``doc_len`` tokens.
        top_k: exemplars kept per unit.
        context: context activations kept on each side of an exemplar (within its doc).
        n_bins: histogram bins per unit.
        token_style: ``"wordpiece"`` (BERT: ``[CLS]``, ``##`` continuations) or
            ``"bytelevel"`` (GPT-2: ``Ġ`` marks a leading space).
        labels: add ``label_*`` boolean columns and their ``score_*`` columns.
        hostile: put :data:`HOSTILE_TOKENS` in the corpus and make unit 1 of the first site
            a detector for them (its top exemplars and ``top_token`` are hostile text).
        seed: seed of the simulation; the same seed writes the same tables.

    Returns:
        The atlas directory.

    The first site's last unit gets NaN activations right next to its strongest activation,
    so ``n_nan > 0`` and some context slots are NaN.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=False)
    rng = np.random.default_rng(seed)
    tok, vocab, specials = _corpus(rng, n_docs, doc_len, token_style, hostile)
    vocab_arr = np.array(vocab, dtype=object)
    hostile_ids = np.array([vocab.index(t) for t in HOSTILE_TOKENS]) if hostile else None
    sites = _site_names(n_layers, kinds)
    flat_tok = tok.reshape(-1)
    flat_doc = np.repeat(np.arange(n_docs), doc_len)
    flat_pos = np.tile(np.arange(doc_len), n_docs)

    writers: dict[str, pq.ParquetWriter] = {}

    def write(name: str, table: pa.Table, row_group_size: int) -> None:
        if name not in writers:
            writers[name] = pq.ParquetWriter(out / f"{name}.parquet", table.schema)
        writers[name].write_table(table, row_group_size=row_group_size)

    nonfinite = {}
    block = 256  # units simulated at a time: memory stays bounded for wide sites
    for s_idx, site in enumerate(sites):
        site["n_units"] = n_units
        counts = np.zeros(3, dtype=np.int64)
        for first in range(0, n_units, block):
            size = min(block, n_units - first)
            detectors = (
                {1 - first: hostile_ids}
                if (hostile and s_idx == 0 and first == 0 and size > 1)
                else {}
            )
            acts = _simulate(rng, tok, len(vocab), size, site["kind"], detectors)
            if s_idx == 0 and first + size == n_units and n_units > 2:
                r = int(
                    np.argmax(acts[:, -1])
                )  # NaN next to the strongest activation of the last unit
                for dr in (-2, 1):
                    if 0 <= r + dr < acts.shape[0] and flat_doc[r + dr] == flat_doc[r]:
                        acts[r + dr, -1] = np.nan
            units_t, ex_t, stats = _tables(
                acts,
                first,
                site,
                flat_tok,
                flat_doc,
                flat_pos,
                vocab_arr,
                doc_len,
                top_k,
                context,
                n_bins,
                labels,
            )
            write("units", units_t, 32768)
            write("exemplars", ex_t, 65536)
            counts += [int(stats[k].sum()) for k in ("n_nan", "n_posinf", "n_neginf")]
        nonfinite[site["name"]] = dict(
            zip(("n_nan", "n_posinf", "n_neginf"), map(int, counts), strict=True)
        )
    for w in writers.values():
        w.close()
    pq.write_table(
        pa.table(
            {
                "doc": pa.array(flat_doc, pa.int64()),
                "pos": pa.array(flat_pos, pa.int32()),
                "token_id": pa.array(flat_tok, pa.int64()),
                "token": pa.array(vocab_arr[flat_tok].tolist(), pa.string()),
            }
        ),
        out / "tokens.parquet",
        row_group_size=65536,
    )
    per_source = max(1, n_docs // len(_SOURCES))
    pq.write_table(
        pa.table(
            {
                "doc": pa.array(np.arange(n_docs), pa.int64()),
                "source": pa.array(
                    [_SOURCES[min(d // per_source, len(_SOURCES) - 1)] for d in range(n_docs)]
                ),
                "source_offset": pa.array(
                    [(d % per_source) * doc_len for d in range(n_docs)], pa.int64()
                ),
                "n_tokens": pa.array([doc_len] * n_docs, pa.int32()),
            }
        ),
        out / "docs.parquet",
    )
    n_params = sum(s["n_units"] for s in sites) * 384 * 2
    manifest = {
        "format": "neuronatlas.atlas",
        "version": 1,
        "complete": True,
        "neuronatlas_version": "0.1.0",
        "created": datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat(),
        "model": {
            "name": f"synthetic-{'bert' if token_style == 'wordpiece' else 'gpt2'}-{n_layers}L",
            "class": "BertModel" if token_style == "wordpiece" else "GPT2Model",
            "source": "neuronatlas.viewer._synthetic (simulated)",
            "weights_sha256": hashlib.sha256(f"synthetic-{seed}".encode()).hexdigest(),
            "n_params": n_params,
        },
        "corpus": {
            "description": f"Synthetic documentation-like text ({len(_SOURCES)} sources, seed {seed})",
            "sha256": hashlib.sha256(tok.tobytes()).hexdigest(),
            "n_docs": n_docs,
            "n_tokens": int(tok.size),
        },
        "sites": sites,
        "settings": {
            "top_k": top_k,
            "context": context,
            "window": doc_len,
            "batch_size": 32,
            "threshold": 0.0,
            "seed": seed,
            "specials": specials,
        },
        "timings": {"forward_s": 0.0, "total_s": 0.0, "tokens_per_s": 0.0},
        "nonfinite": nonfinite,
    }
    (out / "atlas.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out
