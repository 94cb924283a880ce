"""Fixtures of the brain tests: one BLAS and torch thread (the machines running tests are
shared, and small solves only lose time to thread hand-offs)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_atlas(tmp_path_factory):
    """A tiny random BERT (MiniLM's vocabulary) mapped over the sentences, activations stored."""
    from brain._brain_util import sentences
    from helpers import tiny_bert

    from neuronatlas import build_atlas
    from neuronatlas.models import load_model

    tok = load_model("minilm").tokenizer
    torch.manual_seed(0)
    model = tiny_bert(0, vocab_size=30522, intermediate_size=48, max_position_embeddings=64)
    return build_atlas(
        model, sentences(), out=tmp_path_factory.mktemp("model") / "atlas", tokenizer=tok,
        sites="resid,mlp", batch_size=8, top_k=3, taxonomy=False, quantiles=False,
        keep_activations=True, store_dtype="float32",
    )  # fmt: skip
