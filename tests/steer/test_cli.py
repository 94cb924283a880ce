"""neuronatlas steer compute | eval | apply on a tiny GPT-2 saved with a character tokenizer."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from helpers import tiny_gpt2
from typer.testing import CliRunner

from neuronatlas.cli import _verb_modules
from neuronatlas.cli._app import app, load_verbs
from neuronatlas.steer import load_sweep, load_vectors

load_verbs(_verb_modules())
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def char_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {chr(c): i for i, c in enumerate(range(32, 127))}
    vocab["<unk>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    fast.pad_token = "<unk>"
    return fast


@pytest.fixture
def model_dir(tmp_path):
    out = tmp_path / "model"
    tiny_gpt2().save_pretrained(out)
    char_tokenizer().save_pretrained(out)
    return out


def test_compute_eval_apply(model_dir, tmp_path, atlas):
    pos, neg, neutral = tmp_path / "pos.txt", tmp_path / "neg.txt", tmp_path / "neutral.txt"
    pos.write_text("THE CAT SAT\nA DOG RAN\nIT IS LOUD\n")
    neg.write_text("the cat sat\na dog ran\nit is loud\n")
    neutral.write_text("some neutral text here\n1234 + 5678 = ?\n")
    vec = tmp_path / "vec"
    res = run(
        "steer",
        "compute",
        str(model_dir),
        "--positive",
        str(pos),
        "--negative",
        str(neg),
        "--out",
        str(vec),
    )
    assert res.exit_code == 0, res.output
    vecs = load_vectors(vec)
    assert [v.site for v in vecs] == ["transformer.h.0", "transformer.h.1"]
    assert all(v.method == "caa" and v.meta["n_pairs"] == 3 for v in vecs)
    assert json.loads((tmp_path / "vec.json").read_text())["vectors"][0]["source_hash"]

    csv = tmp_path / "sweep.csv"
    res = run(
        "steer", "eval", str(model_dir), str(vec), "--positive", str(pos), "--negative", str(neg),
        "--neutral", str(neutral), "--coefs", "-2,0,2", "--atlas", str(atlas), "--name", "case", "--csv", str(csv),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    table = pd.read_csv(csv)
    assert len(table) == 6 and set(table["coef"]) == {-2.0, 0.0, 2.0}
    saved = load_sweep(atlas, "case")
    assert list(saved["site"]) == list(table["site"])
    pd.testing.assert_series_equal(
        saved["behaviour"], table["behaviour"], check_exact=False, rtol=1e-12
    )
    assert "saved analysis steer/case" in res.output

    res = run(
        "steer",
        "apply",
        str(model_dir),
        str(vec),
        "--prompt",
        "the dog",
        "--coef",
        "8",
        "--max-new-tokens",
        "5",
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("unsteered") == 1 and "steered" in res.output

    trans = tmp_path / "trans"
    res = run(
        "steer", "compute", str(model_dir), "--positive", str(pos), "--negative", str(neg), "--out", str(trans),
        "--method", "transport", "--sites", "transformer.h.1.mlp.c_proj:input", "--n-quantiles", "8",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert load_vectors(trans)[0].method == "transport"


def test_errors_are_one_line_messages(model_dir, tmp_path):
    pos = tmp_path / "pos.txt"
    pos.write_text("A\nB\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    res = run(
        "steer",
        "compute",
        str(model_dir),
        "--positive",
        str(pos),
        "--negative",
        str(empty),
        "--out",
        str(tmp_path / "v"),
    )
    assert res.exit_code == 2 and "no non-empty lines" in res.output
    res = run(
        "steer", "compute", str(model_dir), "--positive", str(pos), "--negative", str(pos), "--out",
        str(tmp_path / "v"), "--method", "magic",
    )  # fmt: skip
    assert res.exit_code == 2 and "--method must be" in res.output
    res = run("steer", "apply", str(model_dir), str(tmp_path / "missing"), "--prompt", "x")
    assert res.exit_code == 2 and "neither exists" in res.output
