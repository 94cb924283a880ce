"""intervene(): edits land where the Recorder reads, outputs match hand-made references, hooks go."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from helpers import tiny_gpt2, tiny_llama
from torch import nn

from neuronatlas.errors import SiteError
from neuronatlas.intervene import (
    EditContext,
    InterventionError,
    add,
    heads,
    intervene,
    mean,
    patch,
    project_out,
    resample,
    set_subspace,
    zero,
)
from neuronatlas.record import Recorder


def _ids(seed=0, batch=2, n=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 128, (batch, n), generator=g)


def _out(model, ids):
    out = model(input_ids=ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _no_hooks(model):
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, type(m).__name__


def _down_proj(model, name):
    return dict(model.named_modules())[name.removesuffix(":input")]


@torch.no_grad()
def test_zero_unit_equals_weights_zeroed_by_hand(family):
    fam, model, _, mlp, _ = family
    ids, u = _ids(), 5
    with intervene(model, {mlp: zero(units=[u])}), Recorder(model, mlp) as rec:
        edited = _out(model, ids)
        seen = rec.pop()[mlp]
    assert torch.all(seen[..., u] == 0) and torch.any(seen[..., u + 1] != 0)
    _no_hooks(model)
    lin = _down_proj(model, mlp)
    if fam == "gpt2":  # Conv1D: weight (in, out)
        lin.weight[u, :] = 0
    else:  # nn.Linear: weight (out, in)
        lin.weight[:, u] = 0
    torch.testing.assert_close(edited, _out(model, ids), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_patching_a_run_into_itself_is_bitwise_identical(family):
    _, model, resid, mlp, oproj = family
    ids = _ids(1)
    plain = _out(model, ids)
    with Recorder(model, [resid, mlp, oproj]) as rec:
        model(input_ids=ids)
        acts = rec.pop()
    with intervene(model, {resid: patch(acts), mlp: patch(acts[mlp]), oproj: patch(acts)}):
        patched = _out(model, ids)
    assert torch.equal(patched, plain)
    _no_hooks(model)


@torch.no_grad()
def test_add_at_block_output_equals_a_plain_hook(family):
    _, model, resid, _, _ = family
    ids = _ids(2)
    v = torch.randn(32)
    with intervene(model, {resid: add(v, coef=-3.0)}):
        edited = _out(model, ids)

    def plain_hook(mod, args, output):
        if isinstance(output, tuple):
            return (output[0] - 3.0 * v, *output[1:])
        return output - 3.0 * v

    block = dict(model.named_modules())[resid]
    handle = block.register_forward_hook(plain_hook)
    try:
        ref = _out(model, ids)
    finally:
        handle.remove()
    torch.testing.assert_close(edited, ref, rtol=0, atol=0)
    assert not torch.allclose(edited, _out(model, ids))


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama], ids=["gpt2", "llama"])
@torch.no_grad()
def test_generate_edits_only_generated_positions(build):
    model = build()
    resid = "transformer.h.0" if build is tiny_gpt2 else "model.layers.0"
    prompt, new = _ids(3, batch=1, n=5), 6
    v = torch.randn(32) * 4
    seen: list[tuple[int, list[int], int]] = []
    steer = add(v, positions="generated")

    def logged(t, ctx: EditContext):
        seen.append((ctx.call, ctx.positions.tolist(), ctx.n_prompt))
        return steer(t, ctx)

    kw = dict(max_new_tokens=new, do_sample=False, pad_token_id=0, eos_token_id=None)
    kw["min_new_tokens"] = new
    with intervene(model, {resid: logged}):
        out = model.generate(prompt, output_scores=True, return_dict_in_generate=True, **kw)
    _no_hooks(model)
    assert seen[0] == (0, list(range(5)), 5)
    assert [s[:2] for s in seen[1:]] == [(i, [4 + i]) for i in range(1, new)]
    plain = model.generate(prompt, output_scores=True, return_dict_in_generate=True, **kw)
    # the first new token is predicted from the prompt alone: unchanged
    torch.testing.assert_close(out.scores[0], plain.scores[0], rtol=0, atol=0)

    # reference: greedy decoding without a cache, adding v at positions >= len(prompt)
    block = dict(model.named_modules())[resid]

    def hand_hook(mod, args, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h.clone()
        h[:, prompt.shape[1] :] += v
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handle = block.register_forward_hook(hand_hook)
    try:
        seq, scores = prompt, []
        for _ in range(new):
            logits = model(input_ids=seq, use_cache=False).logits[:, -1]
            scores.append(logits)
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
    finally:
        handle.remove()
    assert torch.equal(out.sequences, seq)
    for a, b in zip(out.scores, scores, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert not torch.equal(out.sequences, plain.sequences) or not torch.allclose(
        out.scores[-1], plain.scores[-1]
    )


@torch.no_grad()
def test_generate_without_cache_needs_n_prompt():
    model = tiny_gpt2()
    prompt = _ids(4, batch=1, n=4)
    calls = []

    def log(t, ctx):
        calls.append((ctx.positions.tolist(), ctx.n_prompt))

    kw = dict(max_new_tokens=3, min_new_tokens=3, do_sample=False, pad_token_id=0, use_cache=False)
    with intervene(model, {"transformer.h.1": log}, n_prompt=4):
        model.generate(prompt, **kw)
    assert calls == [(list(range(n)), 4) for n in (4, 5, 6)]


@torch.no_grad()
def test_projection_and_subspace_edits_land_where_recorded():
    model, ids = tiny_gpt2(), _ids(5)
    site = "transformer.h.0"
    d = torch.randn(2, 32)
    with intervene(model, {site: project_out(d)}), Recorder(model, site) as rec:
        model(input_ids=ids)
        t = rec.pop()[site]
    torch.testing.assert_close(t @ d.T, torch.zeros(2, 7, 2), rtol=0, atol=1e-4)

    basis = torch.linalg.qr(torch.randn(32, 3)).Q.T
    value = torch.tensor([1.0, -2.0, 0.5])
    with Recorder(model, site) as rec:
        model(input_ids=ids)
        before = rec.pop()[site]
    with intervene(model, {site: set_subspace(basis, value)}), Recorder(model, site) as rec:
        model(input_ids=ids)
        after = rec.pop()[site]
    torch.testing.assert_close(after @ basis.T, value.expand(2, 7, 3), rtol=0, atol=1e-5)
    rest = torch.eye(32) - basis.T @ basis  # the orthogonal complement is untouched
    torch.testing.assert_close(after @ rest, before @ rest, rtol=0, atol=1e-5)
    with pytest.raises(InterventionError, match="orthonormal"):
        set_subspace(torch.randn(2, 32), torch.zeros(2))


@torch.no_grad()
def test_heads_adapter_equals_zeroing_the_heads_columns_by_hand():
    model, ids = tiny_llama(), _ids(6)
    site, h = "model.layers.1.self_attn.o_proj:input", 2  # 4 heads of d_head 8
    with intervene(model, {site: heads(4, zero(), heads=[h])}):
        edited = model(input_ids=ids).logits
    model.model.layers[1].self_attn.o_proj.weight[:, h * 8 : (h + 1) * 8] = 0
    torch.testing.assert_close(edited, model(input_ids=ids).logits, rtol=1e-5, atol=1e-6)
    with (
        pytest.raises(InterventionError, match="multiple"),
        intervene(model, {site: heads(5, zero(), heads=[0])}),
    ):
        model(input_ids=ids)


@torch.no_grad()
def test_mean_and_resample_replace_with_given_values():
    model, ids = tiny_gpt2(), _ids(7)
    site = "transformer.h.1.mlp.c_proj:input"
    m = torch.randn(128)
    with intervene(model, {site: mean({site: m}, positions=[0, -1])}), Recorder(model, site) as rec:
        model(input_ids=ids)
        t = rec.pop()[site]
    torch.testing.assert_close(t[:, 0], m.expand(2, 128), rtol=0, atol=0)
    torch.testing.assert_close(t[:, -1], m.expand(2, 128), rtol=0, atol=0)
    assert not torch.allclose(t[:, 1], m.expand(2, 128))

    pool = torch.randn(10, 128)
    draws = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(0)
        with intervene(model, {site: resample(pool, gen)}), Recorder(model, site) as rec:
            model(input_ids=ids)
            draws.append(rec.pop()[site])
    assert torch.equal(draws[0], draws[1])
    dist = torch.cdist(draws[0].reshape(-1, 128), pool)
    torch.testing.assert_close(dist.min(1).values, torch.zeros(14), rtol=0, atol=1e-4)


@torch.no_grad()
def test_containers_tuple_modeloutput_and_keyword_inputs():
    model, ids = tiny_gpt2(), _ids(8)
    # the whole GPT2Model returns a ModelOutput: zeroing it zeroes the (bias-free) logits
    with intervene(model, {"transformer": zero()}):
        logits = model(input_ids=ids).logits
    assert torch.count_nonzero(logits) == 0
    # an attention module returns a tuple
    with (
        intervene(model, {"transformer.h.0.attn": zero()}),
        Recorder(model, "transformer.h.0.attn") as rec,
    ):
        model(input_ids=ids)
        assert torch.count_nonzero(rec.pop()["transformer.h.0.attn"]) == 0

    class KwOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(4, 3)

        def forward(self, x):
            return self.inner(input=x)

    kw = KwOnly().eval()
    x = torch.randn(2, 4)
    with intervene(kw, {"inner:input": add(torch.ones(4))}):
        y = kw(x)
    torch.testing.assert_close(y, kw.inner(x + 1), rtol=0, atol=0)


@torch.no_grad()
def test_channels_first_layout_round_trips():
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(conv=nn.Conv2d(2, 3, 3), act=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1))
    ).eval()
    x = torch.randn(2, 2, 6, 5)
    v = torch.tensor([1.0, -1.0, 2.0])
    with intervene(model, {"conv": add(v)}):
        y = model(x)
    torch.testing.assert_close(y, model.pool(model.act(model.conv(x) + v.view(1, 3, 1, 1))))
    conv1d = nn.Sequential(OrderedDict(conv=nn.Conv1d(2, 3, 3))).eval()
    x1 = torch.randn(2, 2, 9)
    with intervene(conv1d, {"conv": zero(units=[1])}):
        y1 = conv1d(x1)
    ref = conv1d(x1)
    ref[:, 1] = 0
    torch.testing.assert_close(y1, ref, rtol=0, atol=0)


@torch.no_grad()
def test_hooks_are_removed_after_errors_and_interrupts():
    model, ids = tiny_gpt2(), _ids(9)
    plain = model(input_ids=ids).logits

    def boom(t, ctx):
        raise ValueError("boom")

    def interrupt(t, ctx):
        raise KeyboardInterrupt

    with (
        pytest.raises(ValueError, match="boom"),
        intervene(model, {"transformer.h.0": boom, "transformer.h.1.mlp": zero()}),
    ):
        model(input_ids=ids)
    _no_hooks(model)
    with pytest.raises(KeyboardInterrupt), intervene(model, {"transformer.h.1": interrupt}):
        model(input_ids=ids)
    _no_hooks(model)
    with (
        pytest.raises(InterventionError, match=r"shape \(batch, pos, unit\) = \(2, 7, 32\)"),
        intervene(model, {"transformer.h.1": lambda t, ctx: t[:, :3]}),
    ):
        model(input_ids=ids)
    _no_hooks(model)
    with (
        pytest.raises(InterventionError, match="positions"),
        intervene(model, {"transformer.h.1": patch(torch.zeros(1, 3, 32))}),
    ):
        model(input_ids=ids)
    _no_hooks(model)
    assert torch.equal(model(input_ids=ids).logits, plain)


def test_bad_arguments_are_clear_errors():
    model = tiny_gpt2()
    with pytest.raises(InterventionError, match=":attn"):
        intervene(model, {"transformer.h.0.attn:attn": zero()})
    with pytest.raises(InterventionError, match="twice"):
        intervene(model, {"transformer.h.0": zero(), "transformer.h.*": zero()})
    with pytest.raises(InterventionError, match="callable"):
        intervene(model, {"transformer.h.0": 3})
    with pytest.raises(InterventionError, match="non-empty"):
        intervene(model, {})
    with pytest.raises(SiteError):
        intervene(model, {"transformer.h.9": zero()})
    with pytest.raises(InterventionError, match="positions"):
        add(torch.ones(32), positions="middle")
    with pytest.raises(InterventionError, match="NaN"):
        add(torch.tensor([1.0, float("nan")]))
    with (
        pytest.raises(InterventionError, match="units on its last axis"),
        intervene(model, {"transformer.h.0": add(torch.ones(5))}),
    ):
        model(input_ids=_ids())
    _no_hooks(model)
