"""Activation shapes: everything recorded comes out as (batch, pos, unit)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from helpers import tiny_bert
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neuronatlas.record import Recorder, to_bpu


class _CNN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.conv1d = nn.Conv1d(5, 6, 3)
        self.bn = nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 2)

    def forward(self, img):
        f = torch.relu(self.conv(img))  # (batch, 5, H, W)
        seq = self.conv1d(f.flatten(2))  # (batch, 6, H*W - 2)
        return self.head(self.bn(seq).mean(-1))


def test_conv_maps_become_positions_by_channels():
    model = _CNN().eval()
    img = torch.randn(2, 3, 4, 6)
    with torch.no_grad(), Recorder(model, "conv, conv1d:input, conv1d, bn, head") as rec:
        model(img)
        acts = rec.pop()
    conv = model.conv(img)
    got = acts["conv"]
    assert got.shape == (2, 4 * 6, 5)
    # position h * W + w, unit = channel
    for b, h, w, c in [(0, 0, 0, 0), (1, 3, 5, 4), (0, 2, 1, 3), (1, 0, 5, 2)]:
        assert got[b, h * 6 + w, c] == conv[b, c, h, w]
    expected = conv.detach().numpy().transpose(0, 2, 3, 1).reshape(2, 24, 5)
    np.testing.assert_array_equal(got.numpy(), expected)
    # 1-D convolutions and norms are channels-first too: (batch, C, L) -> (batch, L, C)
    flat = torch.relu(conv).flatten(2)
    torch.testing.assert_close(acts["conv1d:input"], flat.transpose(1, 2), rtol=0, atol=0)
    assert acts["conv1d"].shape == (2, 22, 6)
    assert acts["bn"].shape == (2, 22, 6)
    assert acts["head"].shape == (2, 1, 2)


def test_conv3d_feature_maps():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(conv=nn.Conv3d(2, 4, 1)))
    x = torch.randn(3, 2, 2, 3, 5)
    with torch.no_grad(), Recorder(model, "conv") as rec:
        y = model(x)
        got = rec.pop()["conv"]
    np.testing.assert_array_equal(got.numpy(), y.numpy().transpose(0, 2, 3, 4, 1).reshape(3, 30, 4))


def test_unbatched_vector_and_tuple_outputs():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 7, batch_first=True)
    model = _Wrap(lstm)
    x = torch.randn(2, 5, 4)
    with torch.no_grad(), Recorder(model, "lstm") as rec:
        out = model(x)
        got = rec.pop()["lstm"]
    torch.testing.assert_close(got, out, rtol=0, atol=0)  # first tensor of (output, (h, c))

    lin = nn.Sequential(OrderedDict(fc=nn.Linear(4, 3)))
    v = torch.randn(4)
    with torch.no_grad(), Recorder(lin, "fc, fc:input") as rec:
        lin(v)
        acts = rec.pop()
    assert acts["fc"].shape == (1, 1, 3) and acts["fc:input"].shape == (1, 1, 4)


class _Wrap(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.lstm = inner

    def forward(self, x):
        return self.lstm(x)[0]


def test_model_output_gives_its_first_field():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = tiny_bert()

        def forward(self, input_ids):
            return self.bert(input_ids=input_ids).pooler_output

    model = Wrapper()
    x = torch.randint(1, 100, (2, 5))
    with torch.no_grad(), Recorder(model, "bert") as rec:
        model(x)
        got = rec.pop()["bert"]
        ref = model.bert(input_ids=x).last_hidden_state
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_input_site_of_a_module_called_with_keywords_only():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, *, hidden_states, scale):
            return self.proj(hidden_states) * scale

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()

        def forward(self, x):
            return self.block(scale=torch.tensor(2.0), hidden_states=x)

    model = Model()
    x = torch.randn(2, 3, 4)
    with torch.no_grad(), Recorder(model, "block:input") as rec:
        model(x)
        got = rec.pop()["block:input"]
    torch.testing.assert_close(got, x, rtol=0, atol=0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=5), st.booleans())
def test_to_bpu_matches_numpy_reference(shape, channels_first):
    t = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape)
    a = t.numpy()
    if a.ndim == 1:
        ref = a[None, None, :]
    elif a.ndim == 2:
        ref = a[:, None, :]
    elif a.ndim == 3:
        ref = a.transpose(0, 2, 1) if channels_first else a
    else:
        axes = (0, *range(2, a.ndim), 1)
        ref = a.transpose(axes).reshape(a.shape[0], -1, a.shape[1])
    got = to_bpu(t, channels_first=channels_first)
    assert got.dim() == 3
    np.testing.assert_array_equal(got.numpy(), ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_is_kept(dtype):
    model = nn.Sequential(OrderedDict(fc=nn.Linear(4, 3))).to(dtype)
    with torch.no_grad(), Recorder(model, "fc") as rec:
        model(torch.randn(2, 4, dtype=dtype))
        assert rec.pop()["fc"].dtype == dtype
