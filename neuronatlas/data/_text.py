"""Text corpora to model batches: tokenize, cut into windows (one window = one doc), pad, batch."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neuronatlas.data._batch import Batch
from neuronatlas.data._corpus import Corpus, Document, Fingerprint, load_corpus
from neuronatlas.errors import DataError

__all__ = ["CorpusSummary", "TextBatches", "Window", "text_batches"]

# Documents longer than this many characters are tokenized in pieces cut at whitespace, so a
# huge document never has to be tokenized (and held as ids and offsets) in one go.
CHUNK_CHARS = 50_000
# Pieces are tokenized together (one call into the fast tokenizer) up to this many characters.
GROUP_CHARS = 200_000
_WORD_END = re.compile(r"\S\s")  # a non-space followed by a space: where a cut may go
_PROBES = (
    "Hello world.  This is\na test,\tof  12 tokens; naïve café 😀 end.\n\nNew   paragraph.",
    "def f(x):\n    return x + 1  # comment\n\n\tindented\r\nline",
)


@dataclass(frozen=True)
class Window:
    """One model sequence (one atlas ``doc``): a window of a source document's tokens.

    Attributes:
        doc: the sequence id, numbering windows in corpus order from 0.
        source: the source document's name (:attr:`Document.source`).
        source_offset: index, among the source document's tokens (without special tokens), of
            this window's first non-special token.
        token_ids: the ids the model sees, special tokens included.
        tokens: the tokenizer's token strings (``convert_ids_to_tokens``), e.g. ``'##ing'``.
        text: a display string per token: the stretch of the source text the token covers,
            with the whitespace before it (so ``''.join(text)`` reads as the source text, in its
            original case); special tokens show their token string (``'[CLS]'``).
    """

    doc: int
    source: str
    source_offset: int
    token_ids: list[int]
    tokens: list[str]
    text: list[str]

    @property
    def n_tokens(self) -> int:
        """Length of the window, special tokens included."""
        return len(self.token_ids)


@dataclass
class CorpusSummary:
    """What one pass over a text corpus consumed (for the atlas manifest).

    Attributes:
        sha256: :class:`~neuronatlas.data.Fingerprint` of the source documents read.
        n_sources: source documents read.
        n_docs: windows (sequences) produced.
        n_tokens: valid tokens in them, special tokens included.
        complete: True once the pass reached the end of the corpus (or ``max_tokens``).
    """

    sha256: str = ""
    n_sources: int = 0
    n_docs: int = 0
    n_tokens: int = 0
    complete: bool = False


@dataclass
class _Raw:
    """A window before its strings are made (skipped batches never make them)."""

    doc: int
    source: str
    source_offset: int
    ids: list[int]  # content ids, no special tokens
    text: str | None  # the document's text (shared, not copied)
    lo: int  # end of the text shown before the window
    ends: list[int] | None  # cumulative end of each content token in ``text``
    n_tokens: int = 0


@dataclass
class _DocState:
    """Tokens of the current source document not yet cut into windows."""

    index: int
    doc: Document
    ids: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    offset: int = 0  # source token offset of ids[0]
    lo: int = 0  # end of the text shown so far
    prev: int = 0  # running maximum of token ends


@dataclass
class _Piece:
    index: int  # of the document in the corpus
    doc: Document
    start: int
    text: str
    last: bool


class _Tokenizer:
    """What windowing needs from a Hugging Face tokenizer, probed once."""

    def __init__(self, tokenizer: Any) -> None:
        self.hf = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:  # a private copy, so the user's truncation/padding stay as they are
            backend = type(backend).from_str(backend.to_str())
            backend.no_truncation()
            backend.no_padding()
        self.backend = backend
        content, _ = self.encode([_PROBES[0]])[0]
        if self.backend is not None:
            enc = self.backend.encode(_PROBES[0], add_special_tokens=True)
            full, types = list(enc.ids), list(enc.type_ids)
        else:
            enc = tokenizer(
                _PROBES[0], add_special_tokens=True, return_token_type_ids=True, verbose=False
            )
            full, types = (
                list(enc["input_ids"]),
                list(enc.get("token_type_ids") or [0] * len(enc["input_ids"])),
            )
        at = _find(full, content)
        if at < 0:
            raise DataError(
                f"Cannot tell where {type(tokenizer).__name__} adds its special tokens: the "
                "encoding with special tokens does not contain the encoding without them. "
                "Expected a tokenizer that adds tokens only before and after the text."
            )
        end = at + len(content)
        self.prefix, self.suffix = full[:at], full[end:]
        self.prefix_types, self.suffix_types = types[:at], types[end:]
        self.content_type = types[at] if content else 0
        self.n_special = len(self.prefix) + len(self.suffix)
        names = list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
        self.token_type_ids = "token_type_ids" in names
        self.pad_type = int(getattr(tokenizer, "pad_token_type_id", 0) or 0)
        pad = getattr(tokenizer, "pad_token_id", None)
        pad = pad if pad is not None else getattr(tokenizer, "eos_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0
        self.chunk_safe = all(self._splits_cleanly(p) for p in _PROBES)
        self._table: list[Any] | None = None
        if self.backend is not None:
            vocab = self.backend.get_vocab(with_added_tokens=True)
            table: list[Any] = [None] * (max(vocab.values(), default=-1) + 1)
            for token, i in vocab.items():
                table[i] = token
            self._table = table

    def encode(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]] | None]]:
        """Content ids (no special tokens) and character offsets of each text."""
        if self.backend is not None:
            encs = self.backend.encode_batch(texts, add_special_tokens=False)
            return [(list(e.ids), list(e.offsets)) for e in encs]
        out = self.hf(texts, add_special_tokens=False, verbose=False)
        return [(list(ids), None) for ids in out["input_ids"]]

    def _splits_cleanly(self, text: str) -> bool:
        whole = self.encode([text])[0][0]
        cuts = [i for i in range(1, len(text)) if text[i].isspace() and not text[i - 1].isspace()]
        parts = self.encode([p for i in cuts for p in (text[:i], text[i:])])
        return all(a[0] + b[0] == whole for a, b in zip(parts[::2], parts[1::2], strict=True))

    def tokens(self, ids: list[int]) -> list[str]:
        """``convert_ids_to_tokens``, through a lookup table for fast tokenizers."""
        if self._table is None:
            return list(self.hf.convert_ids_to_tokens(ids))
        table = self._table
        try:
            return [table[i] for i in ids]
        except (IndexError, TypeError):  # an id outside the vocabulary: let transformers say
            return list(self.hf.convert_ids_to_tokens(ids))

    def display(self, ids: list[int]) -> list[str]:
        return [self.hf.decode([i]) for i in ids]


def _find(seq: list[int], sub: list[int]) -> int:
    n = len(sub)
    for i in range(len(seq) - n + 1):
        if seq[i : i + n] == sub:
            return i
    return -1


def _cut(text: str, lo: int, hi: int) -> int:
    """A cut in ``(lo, len(text)]`` near ``hi``: before a whitespace run, never inside one.

    Tokenizers that split words at whitespace give the same tokens for the two sides of such a
    cut as for the whole (checked on probes for each tokenizer; see ``_Tokenizer.chunk_safe``).
    """
    j = max(text.rfind(c, lo + 1, hi) for c in " \n\t\r")
    if j > lo:
        while j > lo + 1 and text[j - 1].isspace():
            j -= 1
        if not text[j - 1].isspace():
            return j
    after = _WORD_END.search(text, max(hi - 1, lo + 1))  # no cut before hi: the next one after
    return after.end() - 1 if after else len(text)


def _pieces(docs: Iterable[Document], chunk_chars: int, chunk_safe: bool) -> Iterator[_Piece]:
    for index, doc in enumerate(docs):
        text, lo = doc.text, 0
        while True:
            if not chunk_safe or len(text) - lo <= chunk_chars:
                yield _Piece(index, doc, lo, text[lo:], True)
                break
            hi = _cut(text, lo, lo + chunk_chars)
            yield _Piece(index, doc, lo, text[lo:hi], hi >= len(text))
            if hi >= len(text):
                break
            lo = hi


class _Windower:
    """Tokenize documents piece by piece and cut their content ids into windows."""

    def __init__(self, tok: _Tokenizer, window: int, max_tokens: int | None) -> None:
        self.tok, self.capacity, self.max_tokens = tok, window - tok.n_special, max_tokens
        self.summary = CorpusSummary()

    def run(self, docs: Iterable[Document]) -> Iterator[_Raw]:
        fp, summary = Fingerprint(), self.summary
        state = _DocState(-1, Document("", ""))
        for group in _groups(_pieces(docs, CHUNK_CHARS, self.tok.chunk_safe)):
            encoded = self.tok.encode([p.text for p in group])
            for piece, (ids, offsets) in zip(group, encoded, strict=True):
                if state.index != piece.index:  # a new source document starts
                    state = _DocState(piece.index, piece.doc)
                    fp.update(piece.doc)
                    summary.n_sources += 1
                    summary.sha256 = fp.hexdigest()
                state.ids.extend(ids)
                if offsets is not None and offsets:
                    # cumulative maximum of the token ends, so display pieces never overlap
                    flat = itertools.chain.from_iterable(offsets)
                    ends = np.fromiter(flat, dtype=np.int64, count=2 * len(offsets))[1::2]
                    ends = np.maximum.accumulate(np.maximum(ends + piece.start, state.prev))
                    state.ends.extend(ends.tolist())
                    state.prev = int(ends[-1])
                for raw in self._cut(state, final=piece.last, has_offsets=offsets is not None):
                    yield raw
                    if self._full():
                        summary.complete = True
                        return
        summary.complete = True

    def _full(self) -> bool:
        """True when ``max_tokens`` leaves no room for another window with content."""
        m = self.max_tokens
        return m is not None and self.summary.n_tokens > m - (self.tok.n_special + 1)

    def _cut(self, state: _DocState, *, final: bool, has_offsets: bool) -> Iterator[_Raw]:
        ids, ends = state.ids, state.ends
        while len(ids) >= self.capacity or (final and ids):
            take = min(self.capacity, len(ids))
            if self.max_tokens is not None:
                take = min(take, self.max_tokens - self.summary.n_tokens - self.tok.n_special)
            raw = _Raw(
                doc=self.summary.n_docs,
                source=state.doc.source,
                source_offset=state.offset,
                ids=ids[:take],
                text=state.doc.text,
                lo=state.lo,
                ends=ends[:take] if has_offsets else None,
                n_tokens=take + self.tok.n_special,
            )
            if has_offsets:
                state.lo = ends[take - 1]
                del ends[:take]
            del ids[:take]
            state.offset += take
            self.summary.n_docs += 1
            self.summary.n_tokens += raw.n_tokens
            yield raw
            if self._full():
                return


def _groups(pieces: Iterator[_Piece]) -> Iterator[list[_Piece]]:
    group: list[_Piece] = []
    size = 0
    for p in pieces:
        group.append(p)
        size += len(p.text)
        if size >= GROUP_CHARS or len(group) >= 512:
            yield group
            group, size = [], 0
    if group:
        yield group


@dataclass(eq=False, repr=False)
class TextBatches:
    """Batches of fixed-size windows over a text corpus, re-iterable and deterministic.

    Each source document is tokenized (without truncation; long documents in pieces cut at
    whitespace) and its tokens are cut into consecutive, non-overlapping windows of at most
    ``window`` tokens *including* the special tokens the tokenizer adds (``[CLS] … [SEP]`` for
    BERT, ``<s> …`` for Llama, nothing for GPT-2). Each window is one model sequence and one
    atlas ``doc``, numbered 0, 1, 2, … in corpus order. Windows are padded on the right with
    the tokenizer's pad id (its eos id, or 0, when it has none) to the longest window of their
    batch.

    With ``sort_buffer`` > 1, windows are collected ``sort_buffer`` at a time, sorted by length
    (longest first, then doc id) and cut into batches, which saves padding; the windows a batch
    holds and their doc ids do not depend on it, and no statistic depends on order. Batches whose
    length class is left over are carried into the next buffer.

    ``max_tokens`` stops after exactly that many valid tokens (special tokens included): the last
    window is truncated (its special tokens kept) to fit. When fewer than ``n_special + 1``
    tokens would remain, the pass stops one window earlier, below ``max_tokens``.

    The same corpus and settings give the same windows, doc ids and batches, so a resumed run
    can skip batches it has done with :meth:`batches` (``start``): skipped batches are tokenized
    but never padded or turned into strings.

    Args:
        docs: the corpus (anything :func:`load_corpus` takes, or an iterable of
            :class:`Document`); must be re-iterable to iterate more than once.
        tokenizer: a Hugging Face tokenizer (fast tokenizers give offsets for display text).
        window: maximum tokens per sequence, special tokens included.
        batch_size: windows per batch.
        max_tokens: stop after this many valid tokens (None: the whole corpus).
        sort_buffer: windows sorted together by length (None: ``32 * batch_size``; 0 or 1: keep
            corpus order).

    Examples:
        >>> from neuronatlas.models import load_model
        >>> tok = load_model("minilm").tokenizer
        >>> tb = text_batches(["Hello world.", "A second, longer document."], tok, window=6)
        >>> b = next(iter(tb))  # three windows, sorted by length; doc ids in corpus order
        >>> b.kwargs["input_ids"].shape, b.n_tokens
        (torch.Size([3, 6]), 15)
        >>> [(w.doc, w.source, w.source_offset) for w in b.windows]
        [(1, 'list#1', 0), (0, 'list#0', 0), (2, 'list#1', 4)]
        >>> b.windows[1].tokens, b.windows[1].text
        (['[CLS]', 'hello', 'world', '.', '[SEP]'], ['[CLS]', 'Hello', ' world', '.', '[SEP]'])
        >>> b.mask.sum(dim=1).tolist()
        [6, 5, 4]
    """

    docs: Any
    tokenizer: Any
    window: int = 256
    batch_size: int = 32
    max_tokens: int | None = None
    sort_buffer: int | None = None
    summary: CorpusSummary = field(default_factory=CorpusSummary, init=False)

    def __post_init__(self) -> None:
        for name, low in (("window", 1), ("batch_size", 1), ("max_tokens", 1), ("sort_buffer", 0)):
            v = getattr(self, name)
            if v is None and name in ("max_tokens", "sort_buffer"):
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise DataError(f"{name} must be an int >= {low}; got {v!r}.")
        if self.sort_buffer is None:
            self.sort_buffer = 32 * self.batch_size
        if not callable(self.tokenizer) or not hasattr(self.tokenizer, "convert_ids_to_tokens"):
            raise DataError(
                "Text corpora need a Hugging Face tokenizer; got "
                f"{type(self.tokenizer).__name__}. Load the model with load_model(...) and pass "
                "its .tokenizer, or feed tensors with tensor_batches(...) instead."
            )
        if not isinstance(self.docs, (Corpus, Iterator)):
            self.docs = load_corpus(self.docs)
        self._tok = _Tokenizer(self.tokenizer)
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and limit < 10**8 and self.window > limit:
            raise DataError(
                f"window={self.window} is longer than the tokenizer's model_max_length={limit}: the "
                f"model cannot take sequences that long. Use window <= {limit}."
            )
        n_min = self._tok.n_special + 1
        if self.max_tokens is not None and self.max_tokens < n_min:
            raise DataError(
                f"max_tokens={self.max_tokens} leaves no room for text: each sequence carries "
                f"{self._tok.n_special} special tokens. Use max_tokens >= {n_min}."
            )
        if self.window <= self._tok.n_special:
            raise DataError(
                f"window={self.window} leaves no room for text: the tokenizer adds "
                f"{self._tok.n_special} special tokens to each sequence. Use window >= "
                f"{self._tok.n_special + 1}."
            )
        self._used = False

    def __iter__(self) -> Iterator[Batch]:
        return self.batches()

    def __repr__(self) -> str:
        return (
            f"TextBatches({self.docs!r}, {type(self.tokenizer).__name__}, window={self.window}, "
            f"batch_size={self.batch_size}, max_tokens={self.max_tokens}, "
            f"sort_buffer={self.sort_buffer})"
        )

    def _raw(self) -> Iterator[_Raw]:
        if isinstance(self.docs, Iterator):
            if self._used:
                raise DataError(
                    "These text batches were made from a one-shot iterator of documents, which is "
                    "used up. Pass a list, a Corpus or a path to iterate more than once."
                )
            self._used = True
        windower = _Windower(self._tok, self.window, self.max_tokens)
        self.summary = windower.summary
        raws = windower.run(self.docs)
        first = next(raws, None)
        if first is None:
            raise DataError(
                "The corpus gave no tokens: every document was empty after tokenization. Expected "
                "at least one document with text."
            )
        yield first
        yield from raws

    def windows(self) -> Iterator[Window]:
        """All windows, in corpus (doc id) order, with their token and display strings."""
        for raw in self._raw():
            yield self._window(raw)

    def batches(self, start: int = 0) -> Iterator[Batch]:
        """The batches, from batch number ``start`` on (earlier ones are skipped cheaply)."""
        if not isinstance(start, int) or start < 0:
            raise DataError(f"start must be an int >= 0; got {start!r}.")
        for i, group in enumerate(self._grouped()):
            if i >= start:
                yield self._batch(group)

    def _grouped(self) -> Iterator[list[_Raw]]:
        bs, buf_size = self.batch_size, max(int(self.sort_buffer or 0), 1)
        if buf_size <= 1:
            group: list[_Raw] = []
            for raw in self._raw():
                group.append(raw)
                if len(group) == bs:
                    yield group
                    group = []
            if group:
                yield group
            return
        buf: list[_Raw] = []
        for raw in self._raw():
            buf.append(raw)
            if len(buf) >= buf_size:
                buf.sort(key=lambda r: (-r.n_tokens, r.doc))
                n_full = len(buf) // bs * bs
                for i in range(0, n_full, bs):
                    yield buf[i : i + bs]
                buf = buf[n_full:]
        buf.sort(key=lambda r: (-r.n_tokens, r.doc))
        for i in range(0, len(buf), bs):
            yield buf[i : i + bs]

    def _window(self, raw: _Raw) -> Window:
        tok = self._tok
        ids = [*tok.prefix, *raw.ids, *tok.suffix]
        tokens = tok.tokens(ids)
        if raw.ends is not None and raw.text is not None:
            text = raw.text
            content = [text[a:b] for a, b in itertools.pairwise([raw.lo, *raw.ends])]
        else:
            content = tok.display(raw.ids)
        p = len(tok.prefix)
        display = [*tokens[:p], *content, *tokens[p + len(raw.ids) :]]
        return Window(raw.doc, raw.source, raw.source_offset, ids, tokens, display)

    def _batch(self, raws: list[_Raw]) -> Batch:
        tok = self._tok
        windows = tuple(self._window(r) for r in raws)
        lengths = np.fromiter((w.n_tokens for w in windows), dtype=np.int64, count=len(windows))
        rows, width = len(windows), int(lengths.max())
        ids = np.full((rows, width), tok.pad_id, dtype=np.int64)
        for r, w in enumerate(windows):
            ids[r, : w.n_tokens] = w.token_ids
        input_ids = torch.from_numpy(ids)
        mask = torch.arange(width).unsqueeze(0) < torch.from_numpy(lengths).unsqueeze(1)
        kwargs = {"input_ids": input_ids, "attention_mask": mask.long()}
        if tok.token_type_ids:
            types = np.full((rows, width), tok.pad_type, dtype=np.int64)
            for r, raw in enumerate(raws):
                row = [*tok.prefix_types, *[tok.content_type] * len(raw.ids), *tok.suffix_types]
                types[r, : len(row)] = row
            kwargs["token_type_ids"] = torch.from_numpy(types)
        docs = torch.tensor([w.doc for w in windows], dtype=torch.int64)
        return Batch(
            args=(),
            kwargs=kwargs,
            doc=docs.unsqueeze(1).expand(rows, width).contiguous(),
            pos=torch.arange(width, dtype=torch.int64).expand(rows, width).contiguous(),
            mask=mask,
            token_id=input_ids,
            windows=windows,
            _n_tokens=int(lengths.sum()),
        )


def text_batches(
    docs: Any,
    tokenizer: Any,
    *,
    window: int = 256,
    batch_size: int = 32,
    max_tokens: int | None = None,
    sort_buffer: int | None = None,
) -> TextBatches:
    """Windows of a text corpus, padded into model batches (see :class:`TextBatches`).

    Examples:
        >>> from neuronatlas.models import load_model
        >>> tok = load_model("minilm").tokenizer
        >>> [b.n_tokens for b in text_batches(["one two three"] * 3, tok, batch_size=2)]
        [10, 5]
    """
    return TextBatches(
        docs,
        tokenizer,
        window=window,
        batch_size=batch_size,
        max_tokens=max_tokens,
        sort_buffer=sort_buffer,
    )
