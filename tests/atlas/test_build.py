"""End-to-end: build_atlas against statistics computed independently with plain hooks + numpy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from helpers import tiny_bert, tiny_sequential
from torch import nn

from neuronatlas import build_atlas, open_atlas
from neuronatlas.errors import AtlasExistsError, DataError, FormatVersionError

DOCS = [
    "The quick brown fox jumps over the lazy dog.",
    "Neurons in the mlp fire on some tokens and stay quiet on others.",
    "def f(x): return x + 1  # a tiny python function",
    "Attention is all you need, said the paper, and everybody agreed.",
    "An atlas maps every unit of the network.",
    "Short one.",
    "Numbers 1 2 3 4 5 6 7 8 9 10 and more numbers 11 12 13.",
    "The end of the corpus is near; the fox sleeps.",
]


@pytest.fixture(scope="module")
def tokenizer():
    from neuronatlas.models import load_model

    return load_model("minilm").tokenizer


def bert_with_real_vocab(seed: int = 0):
    """A tiny random BERT over MiniLM's real vocabulary, so the real tokenizer feeds it."""
    return tiny_bert(seed, vocab_size=30522, intermediate_size=48, max_position_embeddings=128)


def reference_mlp(model, tokenizer, docs):
    """Each document alone (no padding, no batching), hooked with a plain forward pre-hook."""
    per_layer: dict[int, list[np.ndarray]] = {0: [], 1: []}
    where: list[tuple[int, int, str]] = []
    hooks = []
    for i, layer in enumerate(model.encoder.layer):
        hooks.append(
            layer.output.dense.register_forward_pre_hook(
                lambda m, args, i=i: per_layer[i].append(args[0][0].detach().numpy().copy())
            )
        )
    try:
        with torch.no_grad():
            for d, text in enumerate(docs):
                enc = tokenizer(text, return_tensors="pt")
                model(**enc)
                ids = enc["input_ids"][0].tolist()
                where += [(d, p, t) for p, t in enumerate(ids)]
    finally:
        for h in hooks:
            h.remove()
    return {i: np.concatenate(v) for i, v in per_layer.items()}, where


def test_tiny_bert_atlas_matches_plain_hooks(tmp_path, tokenizer):
    model = bert_with_real_vocab()
    atlas = build_atlas(
        model,
        DOCS,
        tokenizer=tokenizer,
        out=tmp_path / "a",
        sites="mlp",
        top_k=5,
        context=3,
        batch_size=3,
        window=64,
    )
    ref, where = reference_mlp(model, tokenizer, DOCS)
    units = atlas.units
    assert list(units["site"].unique()) == [
        "encoder.layer.0.output.dense:input",
        "encoder.layer.1.output.dense:input",
    ]
    assert atlas.manifest["corpus"]["n_tokens"] == len(where)
    for layer, acts in ref.items():
        u = units[units["layer"] == layer].sort_values("unit")
        assert len(u) == acts.shape[1] == 48
        np.testing.assert_array_equal(u["count"], acts.shape[0])
        np.testing.assert_allclose(u["mean"], acts.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(u["std"], acts.astype(np.float64).std(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(u["min"], acts.min(0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(u["max"], acts.max(0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(u["frac_active"], (acts > 0).mean(0), atol=1e-12)
        # exact top-5 with (doc, pos)
        site = f"encoder.layer.{layer}.output.dense:input"
        for unit in (0, 7, 47):
            ex = atlas.exemplars(site, unit)
            order = np.argsort(-acts[:, unit], kind="stable")[:5]
            np.testing.assert_allclose(ex["activation"], acts[order, unit], rtol=1e-5, atol=1e-6)
            assert [(int(d), int(p)) for d, p in zip(ex["doc"], ex["pos"], strict=True)] == [
                where[i][:2] for i in order
            ]
            # the context activations are the unit's activations around the exemplar
            row = ex.iloc[0]
            assert len(row["context_tokens"]) == len(row["context_acts"])
            assert "⟦" in row["context"]


def test_tokens_and_docs_tables(tmp_path, tokenizer):
    model = bert_with_real_vocab()
    atlas = build_atlas(model, DOCS, tokenizer=tokenizer, out=tmp_path / "a", batch_size=4)
    tokens = pd.read_parquet(tmp_path / "a" / "tokens.parquet")
    for d, text in enumerate(DOCS):
        ids = tokenizer(text)["input_ids"]
        assert tokens[tokens.doc == d].sort_values("pos")["token_id"].tolist() == ids
    docs = pd.read_parquet(tmp_path / "a" / "docs.parquet")
    assert docs["doc"].tolist() == list(range(len(DOCS)))
    assert docs["n_tokens"].sum() == len(tokens)
    manifest = json.loads((tmp_path / "a" / "atlas.json").read_text())
    assert manifest["format"] == "neuronatlas.atlas" and manifest["complete"] is True
    assert len(manifest["corpus"]["sha256"]) == 64
    assert atlas.manifest["sites"][0]["n_units"] == 48


def test_plain_module_with_tensors(tmp_path):
    model = tiny_sequential(d_in=8, d_hidden=16)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(10, 8, generator=g) for _ in range(5)]
    atlas = build_atlas(model, batches, out=tmp_path / "a", sites="act", top_k=3, context=0)
    x = torch.cat(batches)
    ref = torch.relu(model.fc1(x)).detach().numpy().astype(np.float64)
    u = atlas.units.sort_values("unit")
    np.testing.assert_allclose(u["mean"], ref.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(u["max"], ref.max(0), rtol=1e-6)
    np.testing.assert_allclose(u["frac_active"], (ref > 0).mean(0))
    ex = atlas.query(
        "select unit, rank, doc, activation from exemplars where unit = 3 order by rank"
    )
    order = np.argsort(-ref[:, 3], kind="stable")[:3]
    positive = ref[order, 3] > 0
    assert ex["doc"].tolist()[: positive.sum()] == order[positive].tolist()


def test_nonfinite_counted_and_reported(tmp_path):
    class Spiky(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)
            self.out = nn.Identity()

        def forward(self, x):
            h = self.lin(x)
            h = torch.where(x[:, :1] > 1.5, torch.full_like(h, float("nan")), h)
            return self.out(h)

    torch.manual_seed(0)
    model = Spiky().eval()
    x = torch.randn(200, 4)
    atlas = build_atlas(model, [x[:100], x[100:]], out=tmp_path / "a", sites="out", top_k=2)
    n_bad = int((x[:, 0] > 1.5).sum())
    assert n_bad > 0
    u = atlas.units
    assert u["n_nan"].tolist() == [n_bad] * 3
    assert u["count"].tolist() == [200 - n_bad] * 3
    assert np.isfinite(u["mean"]).all()
    assert atlas.manifest["nonfinite"]["out"]["n_nan"] == 3 * n_bad


def test_resume_after_interrupt_equals_uninterrupted(tmp_path, tokenizer):
    model = bert_with_real_vocab()
    docs = DOCS * 4
    kw = dict(tokenizer=tokenizer, sites="mlp", batch_size=2, top_k=4, checkpoint_every=2)
    full = build_atlas(model, docs, out=tmp_path / "full", **kw)

    def boom(p):
        if p.batches == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_atlas(model, docs, out=tmp_path / "resumed", progress=boom, **kw)
    assert json.loads((tmp_path / "resumed" / "atlas.json").read_text())["complete"] is False
    with pytest.raises(Exception, match="incomplete"):
        open_atlas(tmp_path / "resumed")
    seen = []
    resumed = build_atlas(model, docs, out=tmp_path / "resumed", progress=seen.append, **kw)
    assert seen[0].resumed_from > 0 and seen[0].batches == 8  # continued after checkpoint 6...
    for table in ("units", "exemplars", "tokens", "docs"):
        a = pq.read_table(tmp_path / "full" / f"{table}.parquet").to_pandas()
        b = pq.read_table(tmp_path / "resumed" / f"{table}.parquet").to_pandas()
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    assert full.manifest["corpus"]["sha256"] == resumed.manifest["corpus"]["sha256"]


def test_existing_atlas_with_other_settings_is_refused(tmp_path, tokenizer):
    model = bert_with_real_vocab()
    build_atlas(model, DOCS, tokenizer=tokenizer, out=tmp_path / "a", top_k=3)
    again = build_atlas(model, DOCS, tokenizer=tokenizer, out=tmp_path / "a", top_k=3)
    assert again.manifest["complete"]
    with pytest.raises(AtlasExistsError, match="top_k"):
        build_atlas(model, DOCS, tokenizer=tokenizer, out=tmp_path / "a", top_k=4)
    forced = build_atlas(model, DOCS, tokenizer=tokenizer, out=tmp_path / "a", top_k=4, force=True)
    assert forced.manifest["settings"]["top_k"] == 4


def test_empty_corpus_is_a_clear_error_and_leaves_nothing(tmp_path, tokenizer):
    with pytest.raises(DataError, match="no non-empty document"):
        build_atlas(bert_with_real_vocab(), ["", "   "], tokenizer=tokenizer, out=tmp_path / "a")
    assert not (tmp_path / "a").exists()
    # the same directory then takes a real corpus without --force
    atlas = build_atlas(bert_with_real_vocab(), DOCS[:2], tokenizer=tokenizer, out=tmp_path / "a")
    assert atlas.manifest["complete"]


def test_unknown_format_version_is_refused(tmp_path, tokenizer):
    build_atlas(bert_with_real_vocab(), DOCS[:2], tokenizer=tokenizer, out=tmp_path / "a")
    m = json.loads((tmp_path / "a" / "atlas.json").read_text())
    m["version"] = 99
    (tmp_path / "a" / "atlas.json").write_text(json.dumps(m))
    with pytest.raises(FormatVersionError, match="version 99"):
        open_atlas(tmp_path / "a")


def test_unit_card_escapes_html(tmp_path, tokenizer):
    atlas = build_atlas(
        bert_with_real_vocab(),
        ["<script>alert(1)</script> hello"],
        tokenizer=tokenizer,
        out=tmp_path / "a",
        top_k=2,
    )
    card = atlas.unit(atlas.sites[0], 0)
    html = card._repr_html_()
    assert "<script>" not in html and "&lt;" in html


def test_keep_activations_writes_the_store_and_resumes(tmp_path, tokenizer):
    from neuronatlas.store import ActivationStore

    model = bert_with_real_vocab()
    docs = DOCS * 3
    kw = dict(
        tokenizer=tokenizer,
        sites="mlp",
        batch_size=2,
        top_k=3,
        keep_activations=True,
        store_dtype="float32",
        checkpoint_every=2,
    )

    def boom(p):
        if p.batches == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_atlas(model, docs, out=tmp_path / "a", progress=boom, **kw)
    atlas = build_atlas(model, docs, out=tmp_path / "a", **kw)
    store = ActivationStore.open(tmp_path / "a" / "store")
    ref, where = reference_mlp(model, tokenizer, docs)
    assert store.n_rows == len(where) == atlas.manifest["store"]["n_rows"]
    index = store.index().to_pandas()
    # rows come in batch order; line them up with the reference by (doc, pos)
    order = {(d, p): i for i, (d, p, _) in enumerate(where)}
    idx = [order[(int(d), int(p))] for d, p in zip(index["doc"], index["pos"], strict=True)]
    assert sorted(idx) == list(range(len(where)))
    for layer in (0, 1):
        got = store.read(f"encoder.layer.{layer}.output.dense:input")
        np.testing.assert_allclose(got, ref[layer][idx], rtol=1e-5, atol=1e-6)
    assert index["token_id"].tolist() == [where[i][2] for i in idx]


def test_other_documents_with_same_description_are_not_mistaken(tmp_path, tokenizer):
    model = bert_with_real_vocab()
    build_atlas(model, DOCS[:3], tokenizer=tokenizer, out=tmp_path / "a")
    with pytest.raises(AtlasExistsError, match="corpus_identity"):
        build_atlas(model, DOCS[3:6], tokenizer=tokenizer, out=tmp_path / "a")
