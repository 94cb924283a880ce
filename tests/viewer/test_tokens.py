"""Token display: WordPiece, byte-level BPE and SentencePiece pieces shown as text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronatlas.viewer._tokens import detect_style, display_run, display_token, is_special


def test_detect_style():
    assert detect_style(["[CLS]", "hello", "##ing", "[SEP]"]) == "wordpiece"
    assert detect_style(["Ġthe", "Ġcat", ".", "Ċ"]) == "bytelevel"
    assert detect_style(["▁the", "▁cat", "s"]) == "sentencepiece"
    assert detect_style(["a", "b"]) == "plain"
    assert detect_style([]) == "plain"


def test_wordpiece_run_reads_as_text():
    run = ["[CLS]", "the", "func", "##tion", "(", "x", ")", "returns", "none", ".", "[SEP]"]
    assert "".join(display_run(run, "wordpiece")) == "[CLS] the function (x) returns none. [SEP]"
    assert display_token("##ing", "wordpiece") == "ing"
    assert display_token("##", "wordpiece") == "##"  # a real '##' token stays


def test_specials_and_visible_whitespace():
    assert (
        is_special("[CLS]")
        and is_special("<|endoftext|>")
        and is_special("</s>")
        and not is_special("<script>")
    )
    assert display_token("Ċ", "bytelevel") == "↵"
    assert display_token("ĉ", "bytelevel") == "⇥"
    assert display_token("<0x0A>", "sentencepiece") == "↵"
    assert display_token("▁hello", "sentencepiece") == " hello"
    assert (
        display_token("<script>alert(1)</script>", "wordpiece") == "<script>alert(1)</script>"
    )  # text, escaped later


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30))
def test_bytelevel_matches_the_tokenizers_library(text):
    """Byte-level pieces (from the tokenizers library) decode back to the original text."""
    tokenizers = pytest.importorskip("tokenizers")
    pieces = [
        p
        for p, _ in tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(
            text
        )
    ]
    decoded = tokenizers.decoders.ByteLevel().decode(pieces)
    shown = "".join(display_run(pieces, "bytelevel"))
    assert shown == decoded.replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")
