"""Windows and text batches: coverage of every token, doc ids, padding, max_tokens, resuming."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuronatlas.data import Document, TextBatches, corpus_fingerprint, load_corpus, text_batches
from neuronatlas.data import _text as text_module
from neuronatlas.errors import DataError


def docs_of(texts: list[str]) -> list[Document]:
    return [Document(f"d{i}", t) for i, t in enumerate(texts)]


def content_ids(tok, text: str) -> list[int]:
    """Reference: the whole document tokenized in one call, without special tokens."""
    return list(tok(text, add_special_tokens=False, verbose=False)["input_ids"])


def specials(tok) -> tuple[list[int], list[int]]:
    """Reference prefix/suffix: what the tokenizer adds around the content of a text."""
    full = tok("hello", add_special_tokens=True)["input_ids"]
    bare = tok("hello", add_special_tokens=False)["input_ids"]
    at = next(i for i in range(len(full)) if full[i : i + len(bare)] == bare)
    return full[:at], full[at + len(bare) :]


def check_coverage(tok, docs: list[Document], windows, window: int) -> None:
    """Windows reproduce each document's tokens exactly once, in order, within the limit."""
    prefix, suffix = specials(tok)
    per_source: dict[str, list] = {}
    for expected_doc, w in enumerate(windows):
        assert w.doc == expected_doc
        assert w.n_tokens <= window
        assert w.token_ids[: len(prefix)] == prefix
        assert w.token_ids[len(w.token_ids) - len(suffix) :] == suffix
        per_source.setdefault(w.source, []).append(w)
    capacity = window - len(prefix) - len(suffix)
    for d in docs:
        expected = content_ids(tok, d.text)
        ws = per_source.pop(d.source, [])
        got: list[int] = []
        for i, w in enumerate(ws):
            assert w.source_offset == len(got)
            body = w.token_ids[len(prefix) : len(w.token_ids) - len(suffix)]
            assert body, "a window without content"
            if i < len(ws) - 1:
                assert len(body) == capacity  # only a document's last window may be short
            got.extend(body)
        assert got == expected, d.source
    assert not per_source


@pytest.mark.parametrize("window", [8, 37, 256])
def test_windows_cover_each_document_exactly_once(sample_texts, any_tokenizer, window):
    docs = docs_of(sample_texts)
    windows = list(text_batches(docs, any_tokenizer, window=window).windows())
    check_coverage(any_tokenizer, docs, windows, window)


def test_long_documents_tokenized_in_pieces_match_the_whole(
    sample_texts, any_tokenizer, monkeypatch
):
    monkeypatch.setattr(text_module, "CHUNK_CHARS", 300)  # every sample is cut into many pieces
    monkeypatch.setattr(text_module, "GROUP_CHARS", 1000)
    docs = docs_of([*sample_texts, "x" * 1000 + " tail", "   leading and trailing   "])
    windows = list(text_batches(docs, any_tokenizer, window=64).windows())
    check_coverage(any_tokenizer, docs, windows, 64)


def test_tokenizers_that_cannot_be_cut_are_detected(metaspace_tokenizer, bpe_tokenizer):
    assert not text_module._Tokenizer(metaspace_tokenizer).chunk_safe
    assert text_module._Tokenizer(bpe_tokenizer).chunk_safe


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(
        st.text(alphabet=st.sampled_from("ab cé\n\t.😀Z9"), min_size=0, max_size=120),
        min_size=1,
        max_size=6,
    ),
    window=st.integers(3, 20),
)
def test_coverage_property(minilm_tokenizer, monkeypatch, texts, window):
    monkeypatch.setattr(text_module, "CHUNK_CHARS", 17)
    texts = [*texts, "last"]  # at least one document with tokens
    docs = docs_of(texts)
    check_coverage(
        minilm_tokenizer,
        docs,
        list(TextBatches(docs, minilm_tokenizer, window=window).windows()),
        window,
    )


def test_display_text_reads_as_the_source(sample_texts, any_tokenizer):
    docs = docs_of(sample_texts)
    tb = text_batches(docs, any_tokenizer, window=50)
    prefix, suffix = specials(any_tokenizer)
    shown: dict[str, str] = {}
    for w in tb.windows():
        assert len(w.text) == len(w.tokens) == w.n_tokens
        assert w.tokens == any_tokenizer.convert_ids_to_tokens(w.token_ids)
        assert w.text[: len(prefix)] == w.tokens[: len(prefix)]  # specials shown as tokens
        body = w.text[len(prefix) : w.n_tokens - len(suffix)]
        shown[w.source] = shown.get(w.source, "") + "".join(body)
    for d in docs:
        # everything up to the end of the last token, in the original case and spacing
        offsets = any_tokenizer(d.text, add_special_tokens=False, return_offsets_mapping=True)
        end = max(e for _, e in offsets["offset_mapping"])
        assert shown[d.source] == d.text[:end]


def test_display_joins_word_pieces(minilm_tokenizer):
    w = next(text_batches(["Tokenizing ISN'T  hard"], minilm_tokenizer).windows())
    assert w.tokens[1:3] == ["token", "##izing"]
    assert w.text == ["[CLS]", "Token", "izing", " ISN", "'", "T", "  hard", "[SEP]"]


def test_batches_pad_right_with_masks(sample_texts, any_tokenizer):
    docs = docs_of(sample_texts)
    tok = any_tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    n_total, seen_docs = 0, []
    for b in text_batches(docs, tok, window=40, batch_size=5):
        ids, att = b.kwargs["input_ids"], b.kwargs["attention_mask"]
        lengths = torch.tensor([w.n_tokens for w in b.windows])
        assert ids.shape == (len(b.windows), int(lengths.max()))
        expected_mask = torch.arange(ids.shape[1]) < lengths[:, None]
        assert torch.equal(b.mask, expected_mask)
        assert torch.equal(att, expected_mask.long())
        assert bool((ids[~b.mask] == pad).all())
        for r, w in enumerate(b.windows):
            assert ids[r, : w.n_tokens].tolist() == w.token_ids
            assert bool((b.doc[r] == w.doc).all())
        assert torch.equal(b.pos, torch.arange(ids.shape[1]).expand_as(ids))
        assert b.token_id is ids
        assert ("token_type_ids" in b.kwargs) == ("token_type_ids" in tok.model_input_names)
        if "token_type_ids" in b.kwargs:
            assert b.kwargs["token_type_ids"].shape == ids.shape
            assert int(b.kwargs["token_type_ids"].abs().sum()) == 0
        assert b.args == ()
        assert b.n_tokens == int(b.mask.sum()) == int(lengths.sum())
        n_total += b.n_tokens
        seen_docs += [w.doc for w in b.windows]
    assert sorted(seen_docs) == list(range(len(seen_docs)))
    assert n_total == sum(w.n_tokens for w in text_batches(docs, tok, window=40).windows())


def test_batch_kwargs_run_a_bert_like_the_tokenizer_would(minilm_tokenizer):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(
        BertConfig(
            vocab_size=minilm_tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
        )
    ).eval()
    texts = ["A short one.", "A somewhat longer sentence, with more tokens in it."]
    b = next(iter(text_batches(texts, minilm_tokenizer, sort_buffer=0)))
    ref = minilm_tokenizer(texts, padding=True, return_tensors="pt")
    for k in ref:
        assert torch.equal(b.kwargs[k], ref[k])
    with torch.no_grad():
        out = model(**b.kwargs).last_hidden_state
        solo = model(**minilm_tokenizer(texts[0], return_tensors="pt")).last_hidden_state
    n = b.windows[0].n_tokens
    torch.testing.assert_close(out[0, :n], solo[0], rtol=1e-5, atol=1e-5)


def test_sort_buffer_and_batch_size_change_batches_not_windows(sample_texts, bpe_tokenizer):
    docs = docs_of(sample_texts * 2)

    def windows_by_doc(**kw):
        return {
            w.doc: (w.source, w.source_offset, w.token_ids)
            for b in text_batches(docs, bpe_tokenizer, window=30, **kw)
            for w in b.windows
        }

    reference = windows_by_doc(batch_size=4, sort_buffer=0)
    corpus_order = [
        w.doc
        for b in text_batches(docs, bpe_tokenizer, window=30, batch_size=4, sort_buffer=0)
        for w in b.windows
    ]
    assert corpus_order == list(range(len(reference)))
    for kw in (
        {"batch_size": 7, "sort_buffer": 16},
        {"batch_size": 3, "sort_buffer": None},
        {"batch_size": 64},
    ):
        assert windows_by_doc(**kw) == reference
    padded_sorted = sum(
        b.mask.numel()
        for b in text_batches(docs, bpe_tokenizer, window=30, batch_size=4, sort_buffer=64)
    )
    padded_plain = sum(
        b.mask.numel()
        for b in text_batches(docs, bpe_tokenizer, window=30, batch_size=4, sort_buffer=0)
    )
    assert padded_sorted < padded_plain


def test_same_settings_same_batches_and_cheap_skip(sample_texts, minilm_tokenizer):
    corpus = load_corpus(sample_texts)
    tb = text_batches(corpus, minilm_tokenizer, window=32, batch_size=4, sort_buffer=12)
    first = [(b.kwargs["input_ids"], b.doc) for b in tb]
    again = [
        (b.kwargs["input_ids"], b.doc)
        for b in text_batches(corpus, minilm_tokenizer, window=32, batch_size=4, sort_buffer=12)
    ]
    assert len(first) == len(again) > 5
    for (a_ids, a_doc), (b_ids, b_doc) in zip(first, again, strict=True):
        assert torch.equal(a_ids, b_ids) and torch.equal(a_doc, b_doc)
    resumed = list(tb.batches(start=5))
    assert len(resumed) == len(first) - 5
    for (ids, doc), b in zip(first[5:], resumed, strict=True):
        assert torch.equal(ids, b.kwargs["input_ids"]) and torch.equal(doc, b.doc)
    assert list(tb.batches(start=len(first) + 3)) == []


@pytest.mark.parametrize("max_tokens", [3, 50, 123, 1000])
def test_max_tokens_is_exact_and_a_prefix(sample_texts, minilm_tokenizer, max_tokens):
    docs = docs_of(sample_texts)
    full = list(text_batches(docs, minilm_tokenizer, window=40).windows())
    tb = text_batches(docs, minilm_tokenizer, window=40, max_tokens=max_tokens, batch_size=3)
    batches = list(tb)
    cut = [w for b in batches for w in b.windows]
    cut.sort(key=lambda w: w.doc)
    assert sum(b.n_tokens for b in batches) == max_tokens == tb.summary.n_tokens
    assert [w.doc for w in cut] == list(range(len(cut)))
    for w, ref in zip(cut[:-1], full, strict=False):
        assert w.token_ids == ref.token_ids
    last, ref = cut[-1], full[len(cut) - 1]
    assert last.token_ids[:-1] == ref.token_ids[: last.n_tokens - 1]  # truncated, [SEP] kept
    assert last.token_ids[-1] == minilm_tokenizer.sep_token_id
    assert tb.summary.complete and tb.summary.n_docs == len(cut)
    # documents consumed: those the windows came from
    assert tb.summary.n_sources == len({w.source for w in cut})
    assert tb.summary.sha256 == corpus_fingerprint(docs[: tb.summary.n_sources])


def test_max_tokens_stops_when_only_specials_would_fit(bpe_tokenizer):
    # <s> + 1 content token per window at window=2: 7 tokens allow three windows and one token left
    tb = text_batches(["a b c d e f g h"], bpe_tokenizer, window=2, max_tokens=7)
    assert sum(b.n_tokens for b in tb) == 6


def test_summary_counts_the_whole_corpus(sample_texts, minilm_tokenizer):
    docs = docs_of([*sample_texts, "   ", ""])
    tb = text_batches(docs, minilm_tokenizer, window=64)
    n = sum(b.n_tokens for b in tb)
    assert tb.summary.n_tokens == n and tb.summary.complete
    assert tb.summary.n_sources == len(docs) - 2  # empty documents are skipped by the corpus
    assert tb.summary.sha256 == corpus_fingerprint(docs[:-2])
    assert tb.summary.n_docs == sum(
        -(-len(content_ids(minilm_tokenizer, d.text)) // 62) for d in docs
    )


def test_errors(minilm_tokenizer):
    with pytest.raises(DataError, match="model_max_length=512"):
        text_batches(["x"], minilm_tokenizer, window=1024)
    with pytest.raises(DataError, match="2 special tokens"):
        text_batches(["x"], minilm_tokenizer, window=2)
    with pytest.raises(DataError, match="max_tokens >= 3"):
        text_batches(["x"], minilm_tokenizer, max_tokens=2)
    for bad in (
        {"window": 0},
        {"batch_size": 0},
        {"batch_size": 2.5},
        {"sort_buffer": -1},
        {"max_tokens": True},
    ):
        with pytest.raises(DataError, match="must be an int"):
            text_batches(["x"], minilm_tokenizer, **bad)
    with pytest.raises(DataError, match="need a Hugging Face tokenizer; got NoneType"):
        text_batches(["x"], None)
    with pytest.raises(DataError, match="start must be"):
        next(text_batches(["x"], minilm_tokenizer).batches(start=-1))
    with pytest.raises(DataError, match="no non-empty document"):
        text_batches(["", "  \n"], minilm_tokenizer)
    with pytest.raises(DataError, match="gave no tokens"):
        list(text_batches(iter([Document("a", "\u200b")]), minilm_tokenizer))
    once = text_batches(iter(docs_of(["one", "two"])), minilm_tokenizer)
    assert len(list(once)) == 1
    with pytest.raises(DataError, match="one-shot iterator"):
        list(once)


def test_python_tokenizers_without_offsets(sample_texts):
    from transformers import ByT5Tokenizer  # a pure-Python (slow) tokenizer, no vocab files

    tok = ByT5Tokenizer()
    docs = docs_of([sample_texts[0][:300], "Hi café 😀 end"])
    tb = text_batches(docs, tok, window=37)
    windows = list(tb.windows())
    check_coverage(tok, docs, windows, 37)
    for w in windows:  # display falls back to decoding each token on its own
        assert w.text[:-1] == [tok.decode([i]) for i in w.token_ids[:-1]]
        assert w.text[-1] == "</s>"
    assert "".join("".join(w.text[:-1]) for w in windows[-1:]).endswith(" end")
    b = next(iter(tb))
    assert set(b.kwargs) == {"input_ids", "attention_mask"}
