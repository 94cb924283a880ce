"""Recorder: parity with unhooked runs, hook removal, activations against references, errors."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_bert, tiny_gpt2, tiny_llama, tiny_sequential
from torch import nn

from neuronatlas.errors import RecordingError
from neuronatlas.record import Recorder
from neuronatlas.sites import resolve_sites

BUILDERS = {"gpt2": tiny_gpt2, "bert": tiny_bert, "llama": tiny_llama}


def hook_state(model: nn.Module) -> list[tuple[str, int, int, int, int]]:
    """Number of hooks of every kind on every module."""
    return [
        (
            name,
            len(m._forward_hooks),
            len(m._forward_pre_hooks),
            len(m._forward_hooks_with_kwargs),
            len(m._forward_pre_hooks_with_kwargs),
        )
        for name, m in model.named_modules()
    ]


def no_hooks(model: nn.Module) -> bool:
    return all(sum(counts) == 0 for _, *counts in hook_state(model))


def ids(seed: int = 0, batch: int = 3, pos: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 120, (batch, pos), generator=g)


def first(out) -> torch.Tensor:
    return out[0]


# --------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_outputs_bitwise_identical_with_and_without_recording(arch):
    model = BUILDERS[arch]()
    x = ids()
    mask = torch.ones_like(x)
    mask[1, 6:] = 0  # one padded row
    with torch.no_grad():
        ref = first(model(x, attention_mask=mask))
        with Recorder(model, "mlp, resid") as rec:
            assert not no_hooks(model)
            out = first(model(x, attention_mask=mask))
            acts = rec.pop()
            again = first(model(x, attention_mask=mask))  # a second pass after pop
            rec.pop()
    assert torch.equal(out, ref) and torch.equal(again, ref)
    assert len(acts) == 4
    assert no_hooks(model)


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_attention_sites_switch_to_eager_and_restore(arch):
    model = BUILDERS[arch]()
    before = model.config._attn_implementation
    assert before != "eager"  # the default on CPU is sdpa
    x = ids(1)
    with torch.no_grad():
        ref_default = first(model(x))
        model.set_attn_implementation("eager")
        ref_eager = first(model(x))
        model.set_attn_implementation(before)
        with Recorder(model, "mlp, resid, attn") as rec:
            assert model.config._attn_implementation == "eager"
            out = first(model(x))
            acts = rec.pop()
        after = first(model(x))
    assert model.config._attn_implementation == before
    assert torch.equal(out, ref_eager)  # same implementation: bitwise
    assert torch.equal(after, ref_default)  # and back to the default afterwards
    torch.testing.assert_close(out, ref_default, rtol=1e-4, atol=1e-5)
    assert sum(k.endswith(":attn") for k in acts) == 2
    assert no_hooks(model)


def test_attn_setting_restored_exactly_when_already_eager():
    model = tiny_gpt2(attn_implementation="eager")
    with Recorder(model, "attn") as rec:
        model(ids())
        rec.pop()
    assert model.config._attn_implementation == "eager"


# ------------------------------------------------------------------------- hook removal


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_hooks_removed_after_exception_in_block(arch):
    model = BUILDERS[arch]()
    before = model.config._attn_implementation
    assert no_hooks(model)
    with pytest.raises(ValueError, match="boom"), Recorder(model, "mlp, resid, attn"):
        model(ids())
        raise ValueError("boom")
    assert no_hooks(model)
    assert model.config._attn_implementation == before


def test_hooks_removed_after_exception_inside_forward():
    model = tiny_gpt2()
    with pytest.raises(IndexError), Recorder(model, "resid, attn"):
        model(torch.full((1, 4), 10_000))  # token id out of the vocabulary
    assert no_hooks(model)
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_hooks_removed_after_keyboard_interrupt_mid_forward(arch):
    model = BUILDERS[arch]()
    before = model.config._attn_implementation
    second_block = model.get_submodule(resolve_sites(model, "resid")[1].module)

    def interrupt(module, args, output):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), Recorder(model, "mlp, attn"):
        handle = second_block.register_forward_hook(interrupt)
        try:
            model(ids())
        finally:
            handle.remove()
    assert no_hooks(model)
    assert model.config._attn_implementation == before


def test_hooks_removed_when_a_hook_raises():
    model = tiny_sequential()
    model.add_module("ids", nn.Identity())  # never called, but still hooked
    with pytest.raises(RecordingError), Recorder(model, "fc1, act, fc2"):
        model(torch.randn(2, 8))
        model(torch.randn(2, 8))  # second pass without pop: a clear error, then cleanup
    assert no_hooks(model)


# ----------------------------------------------------------------- values vs. references


def test_sequential_activations_match_manual_computation(seq_model):
    x = torch.randn(5, 8)
    with torch.no_grad(), Recorder(seq_model, "fc1, fc2:input, fc2, fc1:input") as rec:
        y = seq_model(x)
        acts = rec.pop()
    h = F.linear(x, seq_model.fc1.weight, seq_model.fc1.bias)
    torch.testing.assert_close(acts["fc1:input"], x[:, None, :], rtol=0, atol=0)
    torch.testing.assert_close(acts["fc1"], h[:, None, :])
    torch.testing.assert_close(acts["fc2:input"], torch.relu(h)[:, None, :])
    torch.testing.assert_close(acts["fc2"], y[:, None, :], rtol=0, atol=0)
    assert list(acts) == ["fc1:input", "fc1", "fc2:input", "fc2"]


def test_bert_mlp_site_is_gelu_of_intermediate_dense():
    model = tiny_bert()
    layer = model.encoder.layer[0]
    seen = {}
    handle = layer.attention.register_forward_hook(lambda m, a, o: seen.update(h=o[0]))
    x = ids(2)
    with torch.no_grad(), Recorder(model, "mlp") as rec:
        model(x)
        acts = rec.pop()
    handle.remove()
    d = layer.intermediate.dense
    expected = F.gelu(seen["h"] @ d.weight.T + d.bias)  # BERT's "gelu" is the exact erf GELU
    got = acts["encoder.layer.0.output.dense:input"]
    assert got.shape == (3, 9, 64)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_llama_mlp_site_is_silu_gate_times_up():
    model = tiny_llama()
    mlp = model.model.layers[1].mlp
    seen = {}
    handle = model.model.layers[1].post_attention_layernorm.register_forward_hook(
        lambda m, a, o: seen.update(h=o)
    )
    with torch.no_grad(), Recorder(model, "mlp") as rec:
        model(ids(3))
        got = rec.pop()["model.layers.1.mlp.down_proj:input"]
    handle.remove()
    h = seen["h"]
    expected = F.silu(h @ mlp.gate_proj.weight.T) * (h @ mlp.up_proj.weight.T)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_resid_sites_match_hidden_states(arch):
    model = BUILDERS[arch]()
    x = ids(4)
    with torch.no_grad():
        hidden = model(x, output_hidden_states=True).hidden_states
        with Recorder(model, "resid") as rec:
            model(x)
            acts = rec.pop()
    first_block = next(iter(acts.values()))
    torch.testing.assert_close(first_block, hidden[1], rtol=0, atol=0)


# ---------------------------------------------------------------------- stop after last


def test_stop_after_last_skips_the_rest_of_the_forward():
    model = tiny_gpt2()
    calls = []
    handle = model.transformer.h[1].register_forward_pre_hook(lambda m, a: calls.append(1))
    x = ids(5)
    with torch.no_grad():
        with Recorder(model, "transformer.h.0.mlp.c_proj:input, transformer.h.0") as rec:
            full_out = rec.run(model, x)
            full = rec.pop()
        assert len(calls) == 1
        sites = "transformer.h.0.mlp.c_proj:input, transformer.h.0"
        with Recorder(model, sites, stop_after_last=True) as rec:
            assert rec.run(model, x) is None
            early = rec.pop()
            assert len(calls) == 1  # block 1 never ran
            direct = model(x)  # a direct call is never stopped
            rec.pop()
            assert len(calls) == 2
            assert rec.run(model, input_ids=x) is None  # keyword arguments pass through
            assert set(rec.pop()) == set(early)
    handle.remove()
    assert torch.equal(direct.logits, full_out.logits)
    assert full.keys() == early.keys()
    for k in full:
        assert torch.equal(full[k], early[k])
    assert no_hooks(model)


def test_run_without_stop_returns_the_output_and_needs_an_active_recorder(seq_model):
    x = torch.randn(2, 8)
    rec = Recorder(seq_model, "fc1")
    with pytest.raises(RecordingError, match="needs an active Recorder"):
        rec.run(seq_model, x)
    with rec:
        out = rec.run(seq_model, x)
    assert torch.equal(out, seq_model(x))


# -------------------------------------------------------------------------------- errors


class _Weird(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.text = _Text()
        self.unused = nn.Linear(4, 4)

    def forward(self, x):
        self.text(x)
        return self.emb(x)


class _Text(nn.Module):
    def forward(self, x):
        return "not a tensor"


def test_non_tensor_output_names_site_and_what_came():
    model = _Weird()
    with pytest.raises(RecordingError, match=r"'text'.*got str"), Recorder(model, "text"):
        model(torch.tensor([[1, 2]]))
    assert no_hooks(model)


def test_integer_input_is_not_an_activation():
    model = _Weird()
    with (
        pytest.raises(RecordingError, match=r"'emb:input'.*torch.int64"),
        Recorder(model, "emb:input"),
    ):
        model(torch.tensor([[1, 2]]))


def test_site_not_called_errors_on_pop_unless_allowed():
    model = _Weird()
    x = torch.tensor([[1, 2, 3]])
    with Recorder(model, "emb, unused") as rec:
        model(x)
        with pytest.raises(RecordingError, match=r"did not run.*\['unused'\]"):
            rec.pop()
        model(x)
        got = rec.pop(allow_missing=True)
        assert list(got) == ["emb"] and got["emb"].shape == (1, 3, 4)
        with pytest.raises(RecordingError, match="No site was recorded"):
            rec.pop()


def test_in_place_modification_is_detected_and_clone_fixes_it():
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(lin=nn.Linear(4, 6), act=nn.ReLU(inplace=True)))
    x = torch.randn(8, 4)
    with torch.no_grad():
        with Recorder(model, "lin") as rec:
            model(x)
            with pytest.raises(RecordingError, match=r"in place.*clone=True"):
                rec.pop()
        with Recorder(model, "lin", clone=True) as rec:
            model(x)
            got = rec.pop()["lin"]
    torch.testing.assert_close(got, model.lin(x)[:, None, :], rtol=0, atol=0)
    assert (got < 0).any()  # the pre-ReLU values, not the clamped ones


def test_recorder_rejects_non_modules_and_double_entry(seq_model):
    with pytest.raises(RecordingError, match=r"needs a torch\.nn\.Module"):
        Recorder(lambda x: x, "fc1")  # type: ignore[arg-type]
    rec = Recorder(seq_model, "fc1")
    with rec, pytest.raises(RecordingError, match="already active"), rec:
        pass
    assert no_hooks(seq_model)
    assert "fc1" in repr(rec)


def test_works_under_inference_mode(seq_model):
    x = torch.randn(3, 8)
    with torch.inference_mode(), Recorder(seq_model, "fc2:input") as rec:
        seq_model(x)
        got = rec.pop()["fc2:input"]
    torch.testing.assert_close(got, torch.relu(seq_model.fc1(x)).detach()[:, None])
