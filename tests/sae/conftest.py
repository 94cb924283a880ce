"""Fixtures of the SAE tests: a tiny BERT atlas with stored activations, synthetic features."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import tiny_bert
from sae._sae_util import DOCS, SITE


@pytest.fixture(scope="session")
def tokenizer():
    from neuronatlas.models import load_model

    return load_model("minilm").tokenizer


@pytest.fixture(scope="session")
def tiny_store_atlas(tmp_path_factory, tokenizer) -> Path:
    """A tiny random BERT (MiniLM's vocabulary) over a few sentences, activations kept."""
    from neuronatlas import build_atlas

    path = tmp_path_factory.mktemp("atlas") / "a"
    build_atlas(
        tiny_bert(0, vocab_size=30522, intermediate_size=48, max_position_embeddings=128),
        DOCS * 4,
        out=path,
        tokenizer=tokenizer,
        sites=SITE,
        batch_size=4,
        top_k=3,
        context=2,
        keep_activations=True,
        store_dtype="float32",
    )
    return path


@pytest.fixture
def atlas_copy(tiny_store_atlas: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny atlas, for tests that write into it."""
    dst = tmp_path / "atlas"
    shutil.copytree(tiny_store_atlas, dst)
    return dst
