"""Fixtures of the comparison tests: a tiny BERT atlas with stored activations."""

from __future__ import annotations

import pytest
from helpers import tiny_bert

DOCS = [
    "The quick brown fox jumps over the lazy dog.",
    "Neurons in the mlp fire on some tokens and stay quiet on others.",
    "def f(x): return x + 1  # a tiny python function",
    "Attention is all you need, said the paper, and everybody agreed.",
    "An atlas maps every unit of the network.",
    "Short one.",
    "Numbers 1 2 3 4 5 6 7 8 9 10 and more numbers 11 12 13.",
    "The end of the corpus is near; the fox sleeps.",
    "Representations of layers can be compared with kernels.",
    "A brain and a model see the same sentences.",
]


@pytest.fixture(scope="session")
def tokenizer():
    from neuronatlas.models import load_model

    return load_model("minilm").tokenizer


def bert_with_real_vocab(seed: int = 0):
    """A tiny random BERT over MiniLM's real vocabulary, so the real tokenizer feeds it."""
    return tiny_bert(seed, vocab_size=30522, intermediate_size=48, max_position_embeddings=128)


def build_tiny(path, tokenizer, seed: int = 0, docs=DOCS):
    from neuronatlas import build_atlas

    return build_atlas(
        bert_with_real_vocab(seed),
        docs,
        out=path,
        tokenizer=tokenizer,
        sites="resid,mlp",
        batch_size=3,
        top_k=2,
        taxonomy=False,
        quantiles=False,
        keep_activations=True,
        store_dtype="float32",
    )


@pytest.fixture(scope="session")
def tiny_atlas(tmp_path_factory, tokenizer):
    return build_tiny(tmp_path_factory.mktemp("atlas") / "a", tokenizer)
