"""CAA and transport against references computed by hand (Recorder + numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from steer._steer_util import token_lists

from neuronatlas.intervene import EditContext, intervene
from neuronatlas.record import Recorder
from neuronatlas.sites import Site
from neuronatlas.steer import SteeringError, apply_transport, caa, transport, transport_maps


@torch.no_grad()
def test_caa_is_the_mean_difference_at_the_last_token(gpt2):
    pos, neg = token_lists(0, 5, 6), token_lists(1, 5, 6)
    neg[2] = neg[2][:4]  # unequal lengths: padding must not change the last token
    vecs = caa(gpt2, pos, neg, "resid", batch_size=2)
    assert list(vecs) == ["transformer.h.0", "transformer.h.1"]
    ref = {}
    with Recorder(gpt2, "resid") as rec:
        for sign, seqs in ((1, pos), (-1, neg)):
            for s in seqs:
                gpt2(input_ids=s[None])
                for k, a in rec.pop().items():
                    ref[k] = ref.get(k, 0) + sign * a[0, -1].double().numpy() / 5
    for k, v in vecs.items():
        np.testing.assert_allclose(v.vector.numpy(), ref[k], rtol=1e-5, atol=1e-5)
        assert v.method == "caa" and v.meta["n_pairs"] == 5
    with pytest.raises(SteeringError, match="paired"):
        caa(gpt2, pos, neg[:3], "resid")


@torch.no_grad()
def test_caa_vector_edit_adds_coef_times_vector(gpt2):
    v = caa(gpt2, token_lists(0, 3, 5), token_lists(1, 3, 5), "transformer.h.0")["transformer.h.0"]
    ids = token_lists(2, 1, 7)[0][None]
    with intervene(gpt2, {v.site: v.edit(-2.5)}), Recorder(gpt2, v.site) as rec:
        gpt2(input_ids=ids)
        steered = rec.pop()[v.site]
    with Recorder(gpt2, v.site) as rec:
        gpt2(input_ids=ids)
        plain = rec.pop()[v.site]
    torch.testing.assert_close(steered, plain - 2.5 * v.vector, rtol=0, atol=1e-6)


def test_transport_maps_match_least_squares_on_sorted_samples():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 5, generator=g) * torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    b = torch.randn(400, 5, generator=g).exp()  # a skewed target
    m = transport_maps(a, b)
    for u in range(5):
        slope, icpt = np.polyfit(np.sort(a[:, u].numpy()), np.sort(b[:, u].numpy()), 1)
        assert m["scale"][u].item() == pytest.approx(slope, rel=1e-4)
        assert m["shift"][u].item() == pytest.approx(icpt, rel=1e-4, abs=1e-5)
    # unequal sizes: both sides summarized by min(n) quantiles
    m2 = transport_maps(a, b[:100])
    qa = np.quantile(a[:, 0].numpy(), np.linspace(0, 1, 100))
    slope, icpt = np.polyfit(qa, np.sort(b[:100, 0].numpy()), 1)
    assert m2["scale"][0].item() == pytest.approx(slope, rel=1e-4)
    assert m2["shift"][0].item() == pytest.approx(icpt, rel=1e-4, abs=1e-5)
    torch.testing.assert_close(m["lo"], a.min(0).values)
    torch.testing.assert_close(m["hi"], a.max(0).values)


def test_apply_transport_interpolates_and_respects_the_support():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(2000, 3, generator=g)
    tgt = 2.0 * torch.randn(2000, 3, generator=g) + 3.0
    maps = transport_maps(src, tgt)
    ctx = EditContext(Site.make("x"), 0, torch.arange(2000), 2000)
    t = src[None]
    assert torch.equal(apply_transport(maps, 0.0)(t, ctx), t)
    moved = apply_transport(maps, 1.0)(t, ctx)[0]
    torch.testing.assert_close(moved.mean(0), tgt.mean(0), rtol=0, atol=0.15)
    torch.testing.assert_close(moved.std(0), tgt.std(0), rtol=0.05, atol=0)
    half = apply_transport(maps, 0.5)(t, ctx)[0]
    torch.testing.assert_close(half, (src + moved) / 2, rtol=0, atol=1e-5)
    outside = torch.full((1, 1, 3), 100.0)
    assert torch.equal(
        apply_transport(maps, 1.0)(outside, EditContext(Site.make("x"), 0, torch.arange(1), 1)),
        outside,
    )
    unclamped = apply_transport(maps, 1.0, support=False)(
        outside, EditContext(Site.make("x"), 0, torch.arange(1), 1)
    )
    torch.testing.assert_close(unclamped[0, 0], maps["scale"] * 100 + maps["shift"])


@torch.no_grad()
def test_transport_end_to_end_on_a_model(gpt2):
    src, tgt = token_lists(3, 4, 6), token_lists(4, 3, 8)
    site = "transformer.h.1.mlp.c_proj:input"
    vecs = transport(gpt2, src, tgt, site)
    v = vecs[site]
    assert v.method == "transport" and v.meta == {"n_source": 24, "n_target": 24, "reduce": "all"}
    assert set(v.tensors) == {"scale", "shift", "lo", "hi"} and v.n_units == 128
    ids = torch.stack(src[:2])
    plain = gpt2(input_ids=ids).logits
    with intervene(gpt2, {site: v.edit(0.0)}):
        assert torch.equal(gpt2(input_ids=ids).logits, plain)
    with intervene(gpt2, {site: v.edit(1.0)}):
        assert not torch.allclose(gpt2(input_ids=ids).logits, plain)


@torch.no_grad()
def test_streamed_quantile_transport_equals_the_exact_fit_when_the_sketch_is_exact(gpt2):
    src, tgt = token_lists(3, 4, 6), token_lists(4, 3, 8)  # 24 tokens on each side
    site = "transformer.h.1.mlp.c_proj:input"
    exact = transport(gpt2, src, tgt, site)[site]
    streamed = transport(gpt2, src, tgt, site, n_quantiles=24, batch_size=2)[site]
    # below the sketch's capacity every value is kept: the 24 mid-quantiles are the sorted samples
    for k in ("scale", "shift", "lo", "hi"):
        torch.testing.assert_close(streamed.tensors[k], exact.tensors[k], rtol=1e-4, atol=1e-5)
    assert streamed.meta["n_quantiles"] == 24 and streamed.meta["n_source"] == 24
    coarse = transport(gpt2, src, tgt, site, n_quantiles=8)[site]
    assert coarse.tensors["scale"].shape == (128,)
    with pytest.raises(SteeringError, match="n_quantiles"):
        transport(gpt2, src, tgt, site, n_quantiles=1)
