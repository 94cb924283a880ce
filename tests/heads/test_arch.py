"""The per-architecture head adapter: weights and head outputs reproduce the model's attention."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_bert, tiny_gpt2, tiny_llama

from neuronatlas.heads import HeadsError, find_heads
from neuronatlas.record import Recorder


def _no_bias(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    return model


def _record(model, blocks, ids):
    sites = []
    for b in blocks:
        sites += [f"{b.attn}:input", b.attn_site, b.z_site, b.out_proj]
    with Recorder(model, sites) as rec, torch.no_grad():
        model(input_ids=ids)
        return rec.pop()


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_bert, tiny_llama])
def test_value_and_output_weights_reproduce_head_outputs(build):
    model = _no_bias(build())
    blocks = find_heads(model)
    assert [b.layer for b in blocks] == [0, 1]
    ids = torch.randint(5, 100, (2, 10), generator=torch.Generator().manual_seed(0))
    acts = _record(model, blocks, ids)
    for b in blocks:
        w = b.weights(model)
        x = acts[f"{b.attn}:input"]
        probs = acts[b.attn_site]  # (batch, head, q, k)
        z = acts[b.z_site].view(2, 10, b.n_heads, b.d_head)
        v = torch.einsum("bpm,hmd->bhpd", x, w.W_V)
        torch.testing.assert_close(z, (probs @ v).transpose(1, 2), rtol=1e-4, atol=1e-5)
        out = torch.einsum("bphd,hdm->bpm", z, w.W_O)
        torch.testing.assert_close(acts[b.out_proj], out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("build,causal", [(tiny_gpt2, True), (tiny_bert, False)])
def test_query_key_weights_reproduce_attention(build, causal):
    model = _no_bias(build())
    blocks = find_heads(model)
    ids = torch.randint(5, 100, (2, 10), generator=torch.Generator().manual_seed(1))
    acts = _record(model, blocks, ids)
    for b in blocks:
        w = b.weights(model)
        x = acts[f"{b.attn}:input"]
        q = torch.einsum("bpm,hmd->bhpd", x, w.W_Q)
        k = torch.einsum("bpm,hmd->bhpd", x, w.W_K)
        scores = q @ k.transpose(-1, -2) / math.sqrt(b.d_head)
        if causal:
            scores = scores.masked_fill(torch.ones(10, 10, dtype=torch.bool).triu(1), -torch.inf)
        torch.testing.assert_close(acts[b.attn_site], scores.softmax(-1), rtol=1e-4, atol=1e-5)


def test_grouped_query_heads_are_repeated():
    model = tiny_llama()
    b = find_heads(model)[0]
    assert (b.n_heads, b.n_kv_heads, b.d_head) == (4, 2, 8)
    w = b.weights(model)
    torch.testing.assert_close(w.W_K[0], w.W_K[1])
    torch.testing.assert_close(w.W_V[2], w.W_V[3])
    assert not torch.equal(w.W_K[1], w.W_K[2])


def test_unknown_architecture_is_a_clear_error(seq_model):
    with pytest.raises(HeadsError, match="no attention block of a known architecture"):
        find_heads(seq_model)
