"""Builders of tiny models for tests: random-init, from config, no downloads."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

TINY_VOCAB = 128


def tiny_sequential(d_in: int = 8, d_hidden: int = 16, d_out: int = 4, seed: int = 0) -> nn.Module:
    """A 2-layer named MLP: ``fc1 -> act -> fc2``."""
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(fc1=nn.Linear(d_in, d_hidden), act=nn.ReLU(), fc2=nn.Linear(d_hidden, d_out))
    ).eval()


def tiny_gpt2(seed: int = 0, **overrides):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = dict(
        vocab_size=TINY_VOCAB,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
    )
    cfg.update(overrides)
    return GPT2LMHeadModel(GPT2Config(**cfg)).eval()


def tiny_bert(seed: int = 0, **overrides):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = dict(
        vocab_size=TINY_VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    cfg.update(overrides)
    return BertModel(BertConfig(**cfg)).eval()


def tiny_llama(seed: int = 0, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = dict(
        vocab_size=TINY_VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    cfg.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**cfg)).eval()
