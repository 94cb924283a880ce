"""Shared fixtures: tiny models built from config (no downloads) and small corpora."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

from helpers import tiny_bert, tiny_gpt2, tiny_llama, tiny_sequential  # noqa: E402


@pytest.fixture
def seq_model():
    return tiny_sequential()


@pytest.fixture(params=["gpt2", "bert", "llama"])
def hf_model(request):
    return {"gpt2": tiny_gpt2, "bert": tiny_bert, "llama": tiny_llama}[request.param]()
