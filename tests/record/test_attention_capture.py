"""Attention sites: probabilities against manual softmax(QK^T / sqrt(d)), switching and errors."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_bert, tiny_gpt2, tiny_llama
from torch import nn

from neuronatlas.errors import RecordingError
from neuronatlas.record import Recorder, eager_attention


def ids(seed: int, batch: int = 2, pos: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 120, (batch, pos), generator=g)


def heads(t: torch.Tensor, n_head: int) -> torch.Tensor:
    """(batch, pos, n_head * d) -> (batch, head, pos, d)"""
    b, p, _ = t.shape
    return t.view(b, p, n_head, -1).transpose(1, 2)


def assert_rows_are_distributions(p: torch.Tensor) -> None:
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]), rtol=0, atol=1e-5)


def test_bert_attention_matches_manual_softmax_with_padding():
    model = tiny_bert()
    x = ids(0)
    mask = torch.ones_like(x)
    mask[1, 4:] = 0
    site = "encoder.layer.0.attention.self"
    with torch.no_grad(), Recorder(model, f"{site}:attn, {site}:input") as rec:
        model(x, attention_mask=mask)
        acts = rec.pop()
    probs, h = acts[f"{site}:attn"], acts[f"{site}:input"]
    assert probs.shape == (2, 4, 7, 7)
    sa = model.encoder.layer[0].attention.self
    q, k = heads(sa.query(h), 4), heads(sa.key(h), 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    expected = scores.softmax(-1)
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
    assert_rows_are_distributions(probs)
    assert probs[1, :, :, 4:].abs().max() < 1e-6  # padded keys get no attention


def test_gpt2_attention_matches_manual_causal_softmax():
    model = tiny_gpt2()
    x = ids(1)
    site = "transformer.h.1.attn"
    with torch.no_grad(), Recorder(model, f"{site}:attn, {site}:input") as rec:
        model(x)
        acts = rec.pop()
    probs, h = acts[f"{site}:attn"], acts[f"{site}:input"]
    q, k, _ = model.transformer.h[1].attn.c_attn(h).split(32, dim=2)
    q, k = heads(q, 4), heads(k, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    expected = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
    assert_rows_are_distributions(probs)


def test_llama_attention_equals_output_attentions_with_grouped_kv_heads():
    model = tiny_llama()  # 4 query heads, 2 key/value heads
    x = ids(2)
    with torch.no_grad():
        with Recorder(model, "attn") as rec:
            model(x)
            acts = rec.pop()
        with eager_attention(model):
            ref = model(x, output_attentions=True).attentions
    assert model.config._attn_implementation == "sdpa"
    for i, probs in enumerate(acts.values()):
        assert probs.shape == (2, 4, 7, 7)
        torch.testing.assert_close(probs, ref[i], rtol=0, atol=0)
        assert_rows_are_distributions(probs)
        assert probs.triu(1).abs().max() == 0  # causal


def test_t5_attention_takes_the_weights_not_the_position_bias():
    import transformers as T

    torch.manual_seed(0)
    cfg = T.T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=4, d_kv=8, vocab_size=64)
    model = T.T5EncoderModel(cfg).eval()
    x = torch.randint(0, 60, (1, 6))  # batch 1: position bias (1, head, q, k) has the same shape
    with torch.no_grad():
        with Recorder(model, "attn") as rec:
            model(x)
            (probs,) = rec.pop().values()
        with eager_attention(model):
            ref = model(x, output_attentions=True).attentions[0]
    assert probs.shape == (1, 4, 6, 6)
    assert_rows_are_distributions(probs)
    torch.testing.assert_close(probs, ref, rtol=0, atol=0)


class _MHAModel(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        y, _ = self.attn(x, x, x, need_weights=False)
        return self.out(y)


def test_multihead_attention_gives_per_head_weights():
    model = _MHAModel().eval()
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        ref = model(x)
        with Recorder(model, "attn:attn, attn") as rec:
            out = model(x)
            acts = rec.pop()
        _, expected = model.attn(x, x, x, need_weights=True, average_attn_weights=False)
    assert acts["attn:attn"].shape == (3, 4, 5, 5)
    torch.testing.assert_close(acts["attn:attn"], expected, rtol=0, atol=0)
    assert_rows_are_distributions(acts["attn:attn"])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)  # explicit vs fused attention
    assert acts["attn"].shape == (3, 5, 16)


def test_torch_transformer_encoder_preset_under_no_grad():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 6, 16)
    with torch.no_grad(), Recorder(model, "attn, mlp, resid") as rec:
        out = model(x)
        acts = rec.pop()
    assert list(acts) == [
        "layers.0",
        "layers.0.self_attn:attn",
        "layers.0.linear2:input",
        "layers.1",
        "layers.1.self_attn:attn",
        "layers.1.linear2:input",
    ]
    assert acts["layers.0.self_attn:attn"].shape == (2, 4, 6, 6)
    assert_rows_are_distributions(acts["layers.1.self_attn:attn"])
    torch.testing.assert_close(acts["layers.1"], out, rtol=0, atol=0)


def test_only_models_holding_attention_sites_are_switched():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = tiny_gpt2()
            self.b = tiny_bert()

    model = Two()
    with Recorder(model, "a.transformer.h.0.attn:attn, b.encoder.layer.0"):
        assert model.a.config._attn_implementation == "eager"
        assert model.b.config._attn_implementation == "sdpa"
    assert model.a.config._attn_implementation == "sdpa"
    with eager_attention(model):
        assert model.b.config._attn_implementation == "eager"
    assert model.b.config._attn_implementation == "sdpa"


def test_attn_on_a_module_that_is_not_attention():
    model = tiny_gpt2()
    with (
        pytest.raises(
            RecordingError, match=r"'transformer\.h\.0\.mlp:attn'.*attention probabilities"
        ),
        Recorder(model, "transformer.h.0.mlp:attn"),
    ):
        model(ids(3))
    with pytest.raises(RecordingError, match="not a Hugging Face attention module"):
        seq = nn.Sequential(nn.Linear(2, 2))
        with Recorder(seq, "0:attn"):
            seq(torch.randn(1, 2))


class _Config:
    """A config whose attention implementation cannot be switched after loading."""

    def __init__(self):
        self._attn_implementation_internal = "sdpa"

    @property
    def _attn_implementation(self):
        return self._attn_implementation_internal


class _FixedAttention(nn.Module):
    def forward(self, x):
        return x, None  # fused kernel: no probabilities


class _Unswitchable(nn.Module):
    def __init__(self):
        super().__init__()
        self.config = _Config()
        self.attention = _FixedAttention()

    def set_attn_implementation(self, name):  # like a model that only warns and keeps sdpa
        pass

    def forward(self, x):
        return self.attention(x)[0]


def test_model_that_cannot_switch_gets_a_clear_error():
    model = _Unswitchable()
    with (
        pytest.raises(RecordingError, match=r"still runs attention implementation 'sdpa'.*eager"),
        Recorder(model, "attention:attn"),
    ):
        model(torch.randn(1, 3, 4))
    assert model.config._attn_implementation == "sdpa"
