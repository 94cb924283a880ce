"""Show tokenizer pieces as the text they stand for.

Atlases store tokens as the tokenizer's vocabulary strings. Three conventions cover almost
every model:

- **WordPiece** (BERT, MiniLM): a piece that continues a word starts with ``##``; every other
  piece starts a new word, so a space goes before it.
- **Byte-level BPE** (GPT-2, RoBERTa, Llama 3): each byte is mapped to a printable character;
  ``Ġ`` is a space and ``Ċ`` a newline (the mapping of ``bytes_to_unicode`` in GPT-2's
  ``encoder.py``, "Language Models are Unsupervised Multitask Learners", 2019).
- **SentencePiece** (T5, Llama 2, Mistral): ``▁`` marks a leading space; bytes are ``<0x0A>``.

The style of an atlas is detected from a sample of its tokens. Text is only ever returned as
plain strings: escaping is the job of the template that shows it.

Examples:
    >>> detect_style(["[CLS]", "the", "func", "##tion", "[SEP]"])
    'wordpiece'
    >>> display_run(["[CLS]", "the", "func", "##tion", "."], "wordpiece")
    ['[CLS]', ' the', ' func', 'tion', '.']
    >>> display_run(["Ġhello", "Ġworld", "Ċ"], "bytelevel")
    [' hello', ' world', '↵']
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

__all__ = ["detect_style", "display_run", "display_token", "is_special"]

STYLES = ("wordpiece", "bytelevel", "sentencepiece", "plain")
_SPECIAL = re.compile(r"^(\[[A-Z]+\]|<\|[^|<>]{1,40}\|>|</?s>|<(pad|unk|mask|bos|eos)>)$", re.I)
_NO_SPACE_BEFORE = set(".,;:!?)]}%'\"")
_NO_SPACE_AFTER = set("([{$")
_VISIBLE = str.maketrans({"\n": "↵", "\r": "␍", "\t": "⇥"})


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's ``bytes_to_unicode``: printable character -> byte."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def is_special(token: str) -> bool:
    """True for special tokens such as ``[CLS]``, ``<s>`` or ``<|endoftext|>``."""
    return bool(_SPECIAL.match(token))


def detect_style(tokens: Iterable[str]) -> str:
    """Guess the tokenizer convention of a sample of tokens (one of :data:`STYLES`)."""
    n = wp = bl = sp = 0
    for t in tokens:
        n += 1
        wp += t.startswith("##")
        bl += t.startswith(("Ġ", "Ċ"))
        sp += t.startswith("▁")
    if n == 0:
        return "plain"
    if bl / n >= 0.05:
        return "bytelevel"
    if sp / n >= 0.05:
        return "sentencepiece"
    if wp > 0:
        return "wordpiece"
    return "plain"


def _bytelevel(token: str) -> str:
    dec = _byte_decoder()
    if not all(c in dec for c in token):
        return token
    return bytes(dec[c] for c in token).decode("utf-8", errors="replace")


def display_token(token: str, style: str) -> str:
    """One token shown on its own: markers turned into the text they stand for.

    Leading spaces are kept (a cell shows them with ``white-space: pre``); line breaks and tabs
    become visible symbols. A WordPiece continuation loses its ``##``.
    """
    if token is None:
        return ""
    if is_special(token):
        return token
    if style == "wordpiece":
        text = token[2:] if token.startswith("##") and len(token) > 2 else token
    elif style == "bytelevel":
        text = _bytelevel(token)
    elif style == "sentencepiece":
        text = token.replace("▁", " ")
        if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            text = chr(int(text[3:5], 16))
    else:
        text = token
    return text.translate(_VISIBLE)


def display_run(tokens: Sequence[str], style: str) -> list[str]:
    """A contiguous run of tokens, each shown so that the run reads as the original text.

    WordPiece has no space markers, so a space is put before every piece that starts a word,
    except before closing punctuation and after opening brackets (a readable approximation).
    """
    out = [display_token(t, style) for t in tokens]
    if style != "wordpiece":
        return out
    for i in range(1, len(out)):
        tok, prev = tokens[i], tokens[i - 1]
        if tok.startswith("##") and len(tok) > 2:
            continue
        if out[i][:1] in _NO_SPACE_BEFORE and not is_special(tok):
            continue
        if prev[-1:] in _NO_SPACE_AFTER and not is_special(prev):
            continue
        out[i] = " " + out[i]
    return out
