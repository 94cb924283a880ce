"""Site resolution: presets per architecture, globs, suffixes, errors."""

from __future__ import annotations

import fnmatch
import re
from collections import OrderedDict

import pytest
import torch
from helpers import tiny_bert, tiny_gpt2, tiny_llama, tiny_sequential
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neuronatlas.errors import NeuronAtlasError, SiteError
from neuronatlas.sites import PRESETS, Site, _glob_match, resolve_sites


def names(model, spec):
    return [s.name for s in resolve_sites(model, spec)]


# ------------------------------------------------------------------------------ presets

EXPECTED = {
    "gpt2": {
        "mlp": ["transformer.h.0.mlp.c_proj:input", "transformer.h.1.mlp.c_proj:input"],
        "resid": ["transformer.h.0", "transformer.h.1"],
        "attn": ["transformer.h.0.attn:attn", "transformer.h.1.attn:attn"],
    },
    "bert": {
        "mlp": ["encoder.layer.0.output.dense:input", "encoder.layer.1.output.dense:input"],
        "resid": ["encoder.layer.0", "encoder.layer.1"],
        "attn": ["encoder.layer.0.attention.self:attn", "encoder.layer.1.attention.self:attn"],
    },
    "llama": {
        "mlp": ["model.layers.0.mlp.down_proj:input", "model.layers.1.mlp.down_proj:input"],
        "resid": ["model.layers.0", "model.layers.1"],
        "attn": ["model.layers.0.self_attn:attn", "model.layers.1.self_attn:attn"],
    },
}
BUILDERS = {"gpt2": tiny_gpt2, "bert": tiny_bert, "llama": tiny_llama}


@pytest.mark.parametrize("arch", sorted(EXPECTED))
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_resolve_to_exact_names(arch, preset):
    model = BUILDERS[arch]()
    sites = resolve_sites(model, preset)
    assert [s.name for s in sites] == EXPECTED[arch][preset]
    assert [s.layer for s in sites] == [0, 1]
    assert {s.kind for s in sites} == {preset}
    hook = {"mlp": "input", "resid": "output", "attn": "attn"}[preset]
    assert {s.hook for s in sites} == {hook}
    for s in sites:
        assert s.name.split(":")[0] == s.module
        assert s.module in dict(model.named_modules())


def test_presets_combined_come_in_module_order_without_duplicates():
    model = tiny_gpt2()
    got = names(model, "attn, mlp, resid, mlp, transformer.h.0")
    assert got == [
        "transformer.h.0",
        "transformer.h.0.attn:attn",
        "transformer.h.0.mlp.c_proj:input",
        "transformer.h.1",
        "transformer.h.1.attn:attn",
        "transformer.h.1.mlp.c_proj:input",
    ]
    assert names(model, ["mlp", "mlp"]) == names(model, "mlp")


def test_presets_work_on_wrapped_models():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = tiny_llama()
            self.head = nn.Linear(32, 2)

    model = Wrapper()
    assert names(model, "mlp") == [
        "backbone.model.layers.0.mlp.down_proj:input",
        "backbone.model.layers.1.mlp.down_proj:input",
    ]
    assert names(model, "resid") == ["backbone.model.layers.0", "backbone.model.layers.1"]


def _tiny(kind):
    import transformers as T

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=64)
    if kind == "gpt_neox":
        return T.GPTNeoXForCausalLM(T.GPTNeoXConfig(**small, intermediate_size=64))
    if kind == "opt":
        cfg = T.OPTConfig(**small, ffn_dim=64, word_embed_proj_dim=32, bos_token_id=0)
        cfg.eos_token_id = cfg.pad_token_id = 1
        return T.OPTForCausalLM(cfg)
    if kind == "gptj":
        cfg = dict(n_embd=32, n_layer=2, n_head=4, vocab_size=64, rotary_dim=4)
        return T.GPTJForCausalLM(T.GPTJConfig(**cfg, bos_token_id=0, eos_token_id=0))
    if kind == "mistral":
        cfg = T.MistralConfig(**small, intermediate_size=64, num_key_value_heads=2)
        return T.MistralForCausalLM(cfg)
    if kind == "qwen2":
        return T.Qwen2ForCausalLM(
            T.Qwen2Config(**small, intermediate_size=64, num_key_value_heads=2)
        )
    if kind == "vit":
        cfg = dict(small, intermediate_size=64, image_size=8, patch_size=4)
        cfg.pop("vocab_size")
        return T.ViTModel(T.ViTConfig(**cfg))
    if kind == "distilbert":
        return T.DistilBertModel(
            T.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=64)
        )
    if kind == "t5":
        return T.T5Model(
            T.T5Config(d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8, vocab_size=64)
        )
    if kind == "torch":
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
        return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    raise AssertionError(kind)


OTHER_FAMILIES = {
    "gpt_neox": ("gpt_neox.layers.{}", "mlp.dense_4h_to_h", "attention"),
    "opt": ("model.decoder.layers.{}", "fc2", "self_attn"),
    "gptj": ("transformer.h.{}", "mlp.fc_out", "attn"),
    "mistral": ("model.layers.{}", "mlp.down_proj", "self_attn"),
    "qwen2": ("model.layers.{}", "mlp.down_proj", "self_attn"),
    "distilbert": ("transformer.layer.{}", "ffn.lin2", "attention"),
    "torch": ("layers.{}", "linear2", "self_attn"),
}


@pytest.mark.parametrize("kind", sorted(OTHER_FAMILIES))
def test_presets_on_other_families(kind):
    model = _tiny(kind)
    block, mlp, attn = OTHER_FAMILIES[kind]
    blocks = [block.format(i) for i in range(2)]
    assert names(model, "resid") == blocks
    assert names(model, "mlp") == [f"{b}.{mlp}:input" for b in blocks]
    assert names(model, "attn") == [f"{b}.{attn}:attn" for b in blocks]


def test_presets_on_vit_and_t5_layouts():
    vit = _tiny("vit")  # transformers 5: layers.N.mlp.fc2; 4.x: encoder.layer.N.output.dense
    modules = dict(vit.named_modules())
    blocks = [n for n in modules if re.fullmatch(r"(.*\.)?layers?\.\d", n)]
    assert len(blocks) == 2
    assert names(vit, "resid") == blocks
    down = "mlp.fc2" if f"{blocks[0]}.mlp.fc2" in modules else "output.dense"
    assert names(vit, "mlp") == [f"{b}.{down}:input" for b in blocks]
    assert len(names(vit, "attn")) == 2
    t5 = _tiny("t5")
    assert names(t5, "mlp") == [
        "encoder.block.0.layer.1.DenseReluDense.wo:input",
        "encoder.block.1.layer.1.DenseReluDense.wo:input",
        "decoder.block.0.layer.2.DenseReluDense.wo:input",
        "decoder.block.1.layer.2.DenseReluDense.wo:input",
    ]
    # nested ModuleLists inside a matched block (encoder.block.N.layer.M) are not blocks
    assert names(t5, "resid") == [
        "encoder.block.0",
        "encoder.block.1",
        "decoder.block.0",
        "decoder.block.1",
    ]
    assert names(t5, "attn")[0] == "encoder.block.0.layer.0.SelfAttention:attn"


def test_explicit_names_get_the_kind_of_the_matching_preset():
    model = tiny_bert()
    sites = resolve_sites(model, "encoder.layer.*.output.dense:input, encoder.layer.0, pooler")
    assert [(s.name, s.kind, s.layer) for s in sites] == [
        ("encoder.layer.0", "resid", 0),
        ("encoder.layer.0.output.dense:input", "mlp", 0),
        ("encoder.layer.1.output.dense:input", "mlp", 1),
        ("pooler", "module", None),
    ]
    (site,) = resolve_sites(model, "encoder.layer.1.intermediate:attn")
    assert (site.kind, site.hook) == ("attn", "attn")


# ------------------------------------------------------------------------ globs, suffixes


def test_star_stays_within_one_component():
    model = tiny_bert()
    assert names(model, "encoder.layer.*.intermediate") == [
        "encoder.layer.0.intermediate",
        "encoder.layer.1.intermediate",
    ]
    # '*' does not cross dots: attention.output is not matched by encoder.layer.*.output
    assert names(model, "encoder.layer.*.output") == [
        "encoder.layer.0.output",
        "encoder.layer.1.output",
    ]
    assert names(model, "**.output") == [
        "encoder.layer.0.attention.output",
        "encoder.layer.0.output",
        "encoder.layer.1.attention.output",
        "encoder.layer.1.output",
    ]
    # '**' also matches zero components
    assert names(model, "encoder.**.layer.0") == ["encoder.layer.0"]
    assert names(model, "encoder.layer.[!0].intermediate.dense") == [
        "encoder.layer.1.intermediate.dense"
    ]
    assert names(model, "encoder.layer.?.intermediate:input") == [
        "encoder.layer.0.intermediate:input",
        "encoder.layer.1.intermediate:input",
    ]


def test_suffixes_and_list_specs():
    model = tiny_sequential()
    sites = resolve_sites(model, ["fc2:input", " fc1:output ", Site.make("act")])
    assert [(s.name, s.module, s.hook, s.kind, s.layer) for s in sites] == [
        ("fc1", "fc1", "output", "module", None),
        ("act", "act", "output", "module", None),
        ("fc2:input", "fc2", "input", "module", None),
    ]
    both = resolve_sites(model, "fc1:input,fc1,fc1:output")
    assert [s.name for s in both] == ["fc1:input", "fc1"]


def _component_glob_reference(pattern: str, name: str) -> bool:
    """Brute force: match component by component; '**' may absorb any number of components."""
    pat, parts = pattern.split("."), name.split(".")

    def rec(i: int, j: int) -> bool:
        if i == len(pat):
            return j == len(parts)
        if pat[i] == "**":
            return any(rec(i + 1, k) for k in range(j, len(parts) + 1))
        return j < len(parts) and fnmatch.fnmatchcase(parts[j], pat[i]) and rec(i + 1, j + 1)

    return rec(0, 0)


_component = st.sampled_from(["a", "b", "ab", "0", "1", "12", "mlp", "x_y"])
_pat_component = st.sampled_from(
    ["a", "b", "*", "?", "a*", "*b", "[01]", "[!0]", "**", "m?p", "1*"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(_component, min_size=1, max_size=4), min_size=1, max_size=6),
    st.lists(_pat_component, min_size=1, max_size=4),
)
def test_glob_matches_brute_force_reference(paths, pattern_parts):
    all_names = sorted({".".join(p) for p in paths})
    pattern = ".".join(pattern_parts)
    expected = [n for n in all_names if _component_glob_reference(pattern, n)]
    assert _glob_match(pattern, all_names) == expected


# ---------------------------------------------------------------------------------- errors


def test_unknown_name_lists_closest_modules():
    model = tiny_bert()
    with pytest.raises(SiteError) as err:
        resolve_sites(model, "encoder.layer.0.ouput")
    msg = str(err.value)
    assert "'encoder.layer.0.ouput'" in msg
    assert "Closest module names: encoder.layer.0.output" in msg
    assert isinstance(err.value, NeuronAtlasError) and isinstance(err.value, KeyError)


def test_glob_matching_nothing_explains_star_and_suggests():
    model = tiny_bert()
    with pytest.raises(SiteError) as err:
        resolve_sites(model, "encoder.*.intermediate")
    msg = str(err.value)
    assert "matches no module" in msg
    assert "'**'" in msg and "encoder.layer.0.intermediate" in msg
    with pytest.raises(SiteError, match=r"Closest module names: .*transformer\.h\.0"):
        resolve_sites(tiny_gpt2(), "transformer.hh.*")


def test_preset_unavailable_lists_families_and_globs():
    model = tiny_sequential()
    with pytest.raises(SiteError) as err:
        resolve_sites(model, "mlp")
    msg = str(err.value)
    assert "no transformer block of a known architecture" in msg
    for family in ("GPT-2", "Llama", "BERT", "GPT-NeoX", "OPT", "GPT-J"):
        assert family in msg
    assert "globs" in msg and "fc1" in msg

    class NoAttn(nn.Module):  # a recognizable block without an attention module
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(
                nn.ModuleDict({"mlp": nn.ModuleDict({"down_proj": nn.Linear(4, 4)})})
                for _ in range(2)
            )

    assert names(NoAttn(), "mlp") == [
        "layers.0.mlp.down_proj:input",
        "layers.1.mlp.down_proj:input",
    ]
    with pytest.raises(SiteError, match=r"recognized as Llama.*none has such a module"):
        resolve_sites(NoAttn(), "attn")


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("fc1:outputs", r"Unknown site suffix ':outputs'.*:input"),
        ("mlp:input", r"Presets take no suffix"),
        ("", r"No sites given"),
        ([], r"No sites given"),
        ([3], r"must be a string or a Site; got int"),
    ],
)
def test_bad_specs(spec, pattern):
    with pytest.raises(SiteError, match=pattern):
        resolve_sites(tiny_sequential(), spec)


def test_module_named_like_a_preset_wins():
    model = nn.Sequential(OrderedDict(mlp=nn.Linear(2, 2)))
    (site,) = resolve_sites(model, "mlp")
    assert (site.name, site.kind) == ("mlp", "module")
