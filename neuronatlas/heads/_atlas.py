"""Head scores kept in an atlas: ``ATLAS/analyses/heads/<name>/``.

Files written (Parquet, readable without neuronatlas):

- ``scores.parquet``: one row per head, ``site, layer, head`` and one column per score (see
  :func:`~neuronatlas.heads.score_heads`);
- ``prompts.parquet``: the prompts of the attention-pattern view, ``prompt, title, pos,
  token_id, token``;
- ``patterns.parquet``: their attention probabilities, ``prompt, layer, head, q, k, weight``
  (keys with weight below 1e-4 left out);
- ``patching.parquet`` (written by :func:`add_patching`, in its own analysis): an activation
  patching grid ``layer, pos, head, metric, effect``.

Examples:
    >>> import tempfile
    >>> from neuronatlas.heads import AttnOnlyTransformer
    >>> from neuronatlas.viewer import write_synthetic_atlas
    >>> atlas = write_synthetic_atlas(tempfile.mkdtemp() + "/atlas", n_layers=1, n_units=4)
    >>> model = AttnOnlyTransformer(vocab=64, d_model=16, n_layers=2, n_heads=2, d_head=8, n_ctx=40)
    >>> entry = score_atlas(atlas, model, n_seq=4, texts=[[1, 2, 3, 4]])
    >>> entry["path"], entry["n_heads"]
    ('analyses/heads/scores', 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neuronatlas.heads._arch import HeadsError, find_heads
from neuronatlas.heads._score import (
    PATTERN_SCORES,
    WEIGHT_SCORES,
    ScoreSettings,
    _record,
    _Sequences,
    score_heads,
)

__all__ = ["add_patching", "atlas_texts", "attention_patterns", "score_atlas"]

KIND = "heads"
MIN_WEIGHT = 1e-4


def atlas_texts(atlas: str | Path, n: int = 64, max_len: int = 128) -> list[list[int]]:
    """Token ids of the first ``n`` sequences of the atlas corpus (each cut to ``max_len``)."""
    import duckdb

    path = Path(atlas) / "tokens.parquet"
    if not path.exists():
        raise HeadsError(
            f"The atlas at {str(atlas)!r} has no tokens.parquet: pass texts=... (token ids) "
            "for the sink scores."
        )
    rows = duckdb.sql(
        "SELECT doc, list(token_id ORDER BY pos) FROM read_parquet(?) "
        "WHERE pos < ? GROUP BY doc ORDER BY doc LIMIT ?",
        params=[str(path), max_len, n],
    ).fetchall()
    return [list(ids) for _, ids in rows]


def attention_patterns(
    model: nn.Module, prompts: Sequence[Sequence[int]], tokenizer: Any = None
) -> tuple[Any, Any]:
    """Attention probabilities of every head on each prompt, as two tables.

    Returns:
        ``(prompts, patterns)`` DataFrames: ``prompt, pos, token_id, token`` and
        ``prompt, layer, head, q, k, weight`` (weights below 1e-4 left out).
    """
    import pandas as pd

    blocks = find_heads(model)
    tok_rows, pat = [], []
    for p, ids in enumerate(prompts):
        t = torch.tensor([list(ids)], dtype=torch.long)
        for _, attn in _record(model, blocks, t, torch.ones_like(t, dtype=torch.bool), 1):
            for layer, a in attn.items():
                a = a[0].nan_to_num(0.0)  # (head, q, k)
                h, q, k = (a >= MIN_WEIGHT).nonzero(as_tuple=True)
                pat.append(pd.DataFrame({
                    "prompt": p, "layer": layer, "head": h.numpy().astype("int32"),
                    "q": q.numpy().astype("int32"), "k": k.numpy().astype("int32"),
                    "weight": a[h, q, k].numpy().astype("float32"),
                }))  # fmt: skip
        names = (
            tokenizer.convert_ids_to_tokens(list(ids))
            if tokenizer is not None
            else [str(i) for i in ids]
        )
        for i, (tid, name) in enumerate(zip(ids, names, strict=True)):
            tok_rows.append({"prompt": p, "pos": i, "token_id": int(tid), "token": str(name)})
    return pd.DataFrame(tok_rows), pd.concat(pat, ignore_index=True)


def score_atlas(
    atlas: str | Path,
    model: nn.Module | str | None = None,
    tokenizer: Any = None,
    *,
    name: str = "scores",
    texts: Sequence[Sequence[int]] | None = None,
    n_texts: int = 64,
    prompts: Sequence[str] | None = None,
    prompt_len: int = 32,
    weights: bool = True,
    settings: ScoreSettings | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Score every head of the atlas's model and record the results in the atlas.

    Args:
        atlas: the atlas directory.
        model: the model (an ``nn.Module``, or a spec for :func:`neuronatlas.models.load_model`);
            None loads the one the atlas was built from (its manifest's ``model.source``).
        tokenizer: its tokenizer (loaded with the model when ``model`` is a spec or None).
        name: the analysis name (folder ``analyses/heads/<name>``).
        texts: token ids for the sink scores; None: the first ``n_texts`` sequences of the
            atlas corpus (``tokens.parquet``), up to 128 tokens each (``n_texts=0``: the
            random sequences instead).
        prompts: texts whose attention patterns are kept for the viewer; None: the first two
            corpus sequences (``prompt_len`` tokens) and a random segment repeated twice.
        weights, settings, overrides: see :func:`~neuronatlas.heads.score_heads`.

    Returns:
        The analysis's manifest entry.
    """
    from neuronatlas.atlas import add_analysis, analysis_dir
    from neuronatlas.atlas._format import read_manifest

    manifest = read_manifest(Path(atlas))
    if model is None or isinstance(model, str):
        from neuronatlas.models import load_model

        spec = model or (manifest.get("model") or {}).get("source")
        if not spec:
            raise HeadsError(
                f"The atlas at {str(atlas)!r} does not say which model it was built from; pass "
                "the model."
            )
        loaded = load_model(spec)
        model, tokenizer = loaded.model, tokenizer or loaded.tokenizer
    if texts is None and n_texts > 0 and (Path(atlas) / "tokens.parquet").exists():
        texts = atlas_texts(atlas, n_texts)
    s = settings or ScoreSettings()
    table = score_heads(model, tokenizer, texts=texts, weights=weights, settings=s, **overrides)

    if prompts is not None:
        if tokenizer is None:
            raise HeadsError("prompts are text: pass the model's tokenizer too.")
        prompt_ids = [list(tokenizer(p)["input_ids"])[:prompt_len] for p in prompts]
        titles = [p[:60] for p in prompts]
    else:
        prompt_ids = [list(t)[:prompt_len] for t in (texts or [])[:2]]
        titles = [f"corpus sequence {i}" for i in range(len(prompt_ids))]
        seqs = _Sequences(model, tokenizer, ScoreSettings(seg_len=12, seed=s.seed))
        ids, _ = seqs.repeated(1)
        prompt_ids.append(ids[0].tolist())
        titles.append("random tokens, repeated")
    tokens, patterns = attention_patterns(model, prompt_ids, tokenizer)
    tokens["title"] = tokens["prompt"].map(dict(enumerate(titles)))

    folder = analysis_dir(atlas, KIND, name)
    table.to_parquet(folder / "scores.parquet", index=False)
    tokens.to_parquet(folder / "prompts.parquet", index=False)
    patterns.to_parquet(folder / "patterns.parquet", index=False)
    blocks = find_heads(model)
    return add_analysis(
        atlas,
        KIND,
        name,
        files=["scores.parquet", "prompts.parquet", "patterns.parquet"],
        model=type(model).__name__,
        n_layers=len(blocks),
        n_heads=int(sum(b.n_heads for b in blocks)),
        heads_per_layer=[b.n_heads for b in blocks],
        scores={k: v for k, v in {**PATTERN_SCORES, **WEIGHT_SCORES}.items() if k in table},
        settings={**s.__dict__, **overrides, "n_texts": len(texts) if texts else 0},
    )


def add_patching(
    atlas: str | Path,
    grid: Any,
    *,
    name: str = "patching",
    tokens: Sequence[str] | None = None,
    description: str = "",
) -> dict[str, Any]:
    """Keep an activation patching grid (from :func:`~neuronatlas.heads.patch_heads`) in the
    atlas, as ``analyses/heads/<name>/patching.parquet``; the viewer's Heads page shows it as
    one head x position heat map per layer.

    Args:
        grid: the DataFrame ``patch_heads`` returns (``layer, pos, head, metric, effect``).
        tokens: the tokens of the patched input, for the position axis.
        description: what was patched (clean and corrupted inputs, metric).
    """
    from neuronatlas.atlas import add_analysis, analysis_dir

    need = {"layer", "pos", "head", "metric", "effect"}
    if not need <= set(getattr(grid, "columns", ())):
        raise HeadsError(
            f"A patching grid needs the columns {sorted(need)} (as patch_heads returns); got "
            f"{list(getattr(grid, 'columns', []))}."
        )
    folder = analysis_dir(atlas, KIND, name)
    grid[sorted(need)].to_parquet(folder / "patching.parquet", index=False)
    return add_analysis(
        atlas,
        KIND,
        name,
        files=["patching.parquet"],
        clean_metric=float(grid.attrs.get("clean_metric", float("nan"))),
        corrupted_metric=float(grid.attrs.get("corrupted_metric", float("nan"))),
        tokens=list(tokens) if tokens is not None else None,
        description=description,
    )
