"""Token labels built from an atlas's corpus: the properties that probes look for.

A label gives one value per token of the atlas (``tokens.parquet``): a boolean for a binary
property, an integer class, or a number for regression. Built-in labels read the source text
that the tokens cover (``tokens.text``, in order, per source document of ``docs.parquet``):

- ``code``: the token lies on a line of a literal block (a code example, a grammar rule, an
  interactive session) or of a doctest. A literal block, as Python's documentation renders
  it, is a run of lines that follows a blank line and is indented at least 3 columns deeper
  than the text of the paragraph before it (list bullets ``* ``, ``- ``, ``1. `` count as
  indentation of their paragraph); it ends at the first non-blank line indented less than its
  first line. A doctest is a line starting with ``>>>`` and the non-blank lines after it.
- ``keyword``: the token overlaps a Python keyword (:data:`keyword.kwlist`, case-sensitive)
  standing as a whole identifier in the source text (not inside a longer name). Most of them
  are also English words (``in``, ``is``, ``for``, ``and``).
- ``keyword_in_code``: ``keyword`` and ``code``: keywords used as Python, not as English.
- ``position``: the token's position in its sequence (a number; a ridge-probe target).

:func:`sql_label` builds a label from any DuckDB expression over the ``tokens`` columns
(``doc, pos, token_id, token, text``), e.g. ``"token in ('def', 'class')"``.

Special tokens of the tokenizer (``[CLS]``, ``<s>``, ``<|endoftext|>``) carry no source text:
they are left out of the text and labelled false (0 for ``position`` they keep their position).
"""

from __future__ import annotations

import bisect
import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from neuronatlas.atlas import open_atlas
from neuronatlas.concepts._common import ConceptError
from neuronatlas.errors import closest

if TYPE_CHECKING:
    import pandas as pd

    from neuronatlas.atlas import Atlas

__all__ = ["LABELS", "TokenLabel", "code_lines", "sql_label", "token_labels"]

Task = Literal["classification", "regression"]

_SPECIAL = re.compile(r"^(\[[A-Z]+\]|<\|?[A-Za-z_]+\|?>|</?s>)$")
_KEYWORD = re.compile(r"(?<![A-Za-z0-9_])(?:" + "|".join(keyword.kwlist) + r")(?![A-Za-z0-9_])")
_BULLET = re.compile(r"(?:[*+-]|\d+\.|#\.|\(\d+\))\s+")
_BLOCK_INDENT = 3


@dataclass(frozen=True)
class TokenLabel:
    """A named token property: how to compute it and what kind of probe it takes."""

    name: str
    task: Task
    description: str
    compute: Callable[[pd.DataFrame], np.ndarray]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content_indent(line: str) -> int:
    ind = _indent(line)
    m = _BULLET.match(line, ind)
    return m.end() if m else ind


def code_lines(text: str) -> np.ndarray:
    """Which lines of ``text`` belong to a literal block or a doctest (see the module docs).

    Args:
        text: documentation text, lines separated by ``\\n``.

    Returns:
        ``(line,)`` boolean array, one entry per ``text.split("\\n")``.

    Examples:
        >>> text = "The simple form is equivalent to\\n\\n   if x:\\n       y()\\n\\nMore prose."
        >>> code_lines(text).tolist()
        [False, False, True, True, False, False]
    """
    lines = text.split("\n")
    code = np.zeros(len(lines), dtype=bool)
    para_indent: int | None = None  # content indent of the paragraph being read
    last_para_indent = 0  # ... of the last paragraph before a blank line
    after_blank = False
    block: int | None = None  # indent of the first line of the literal block we are in
    doctest = False
    for i, line in enumerate(lines):
        if not line.strip():
            after_blank = True
            doctest = False
            if para_indent is not None:
                last_para_indent, para_indent = para_indent, None
            continue
        ind = _indent(line)
        if block is not None and ind >= block:
            code[i] = True
            after_blank = False
            continue
        block = None
        if line.lstrip().startswith(">>>"):
            doctest = True
        if doctest:
            code[i] = True
            after_blank = False
            continue
        if after_blank and ind >= last_para_indent + _BLOCK_INDENT:
            block = ind
            code[i] = True
        elif para_indent is None:
            para_indent = _content_indent(line)
        after_blank = False
    return code


def _source_texts(
    tokens: pd.DataFrame, docs: pd.DataFrame
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per source document: its text and, for each token row in it, the row and character start.

    Returns a list of ``(text, rows, starts)``; special tokens are left out.
    """
    order = docs.sort_values(["source", "source_offset", "doc"])
    by_doc = {d: g for d, g in tokens.groupby("doc", sort=False)}
    out = []
    for _, group in order.groupby("source", sort=False):
        parts, rows, starts, n = [], [], [], 0
        for d in group["doc"]:
            g = by_doc.get(d)
            if g is None:
                continue
            for row, tok, txt in zip(g.index, g["token"], g["text"], strict=True):
                if txt is None or (txt == tok and _SPECIAL.match(txt)):
                    continue
                rows.append(row)
                starts.append(n + len(txt) - len(txt.lstrip()))
                parts.append(txt)
                n += len(txt)
        out.append(("".join(parts), np.asarray(rows, dtype=np.int64), np.asarray(starts)))
    return out


def _code(tokens: pd.DataFrame, docs: pd.DataFrame) -> np.ndarray:
    out = np.zeros(len(tokens), dtype=bool)
    for text, rows, starts in _source_texts(tokens, docs):
        line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        flags = code_lines(text)
        line_of = np.searchsorted(line_starts, starts, side="right") - 1
        out[rows] = flags[line_of]
    return out


def _keyword(tokens: pd.DataFrame, docs: pd.DataFrame) -> np.ndarray:
    out = np.zeros(len(tokens), dtype=bool)
    for text, rows, starts in _source_texts(tokens, docs):
        spans = [(m.start(), m.end()) for m in _KEYWORD.finditer(text)]
        if not spans:
            continue
        begins = [s for s, _ in spans]
        ends = np.append(starts[1:], len(text))
        for row, a, b in zip(rows, starts, ends, strict=True):
            k = bisect.bisect_right(begins, a)  # keyword starting at or before the token
            hit = k > 0 and spans[k - 1][1] > a
            if not hit and k < len(spans) and spans[k][0] < b:  # keyword starting inside it
                hit = True
            out[row] = hit
    return out


LABELS: dict[str, TokenLabel] = {}


def _register(name: str, task: Task, description: str, fn: Callable[..., np.ndarray]) -> None:
    LABELS[name] = TokenLabel(name, task, description, fn)


_register(
    "code", "classification", "token is inside a code example (literal block or doctest)", _code
)
_register("keyword", "classification", "token is a Python keyword (whole identifier)", _keyword)
_register(
    "keyword_in_code",
    "classification",
    "token is a Python keyword inside a code example",
    lambda t, d: _keyword(t, d) & _code(t, d),
)
_register(
    "position",
    "regression",
    "the token's position in its sequence",
    lambda t, d: t["pos"].to_numpy(np.float64),
)


def token_labels(atlas: str | Path | Atlas, label: str) -> tuple[pd.DataFrame, TokenLabel]:
    """One label value per token of ``atlas``.

    Args:
        atlas: an atlas or its path.
        label: a name of :data:`LABELS` (``code``, ``keyword``, ``keyword_in_code``,
            ``position``), or ``sql:<expression>`` for :func:`sql_label`.

    Returns:
        ``(table, spec)``: a DataFrame ``doc, pos, token_id, token, label`` sorted by
        ``(doc, pos)``, and the label's :class:`TokenLabel`.

    Raises:
        ConceptError: unknown label name (the message lists the known ones).
    """
    a = open_atlas(atlas)
    if label.startswith("sql:"):
        return sql_label(a, label[4:])
    spec = LABELS.get(label)
    if spec is None:
        raise ConceptError(
            f"Unknown label {label!r}. Known labels: {sorted(LABELS)} (closest: "
            f"{closest(label, LABELS)}); or give 'sql:<expression over doc, pos, token_id, "
            "token, text>', e.g. \"sql:token in ('def', 'class')\"."
        )
    tokens = a.query("select doc, pos, token_id, token, text from tokens order by doc, pos")
    docs = a.query("select doc, source, source_offset from docs")
    values = spec.compute(tokens, docs)
    table = tokens[["doc", "pos", "token_id", "token"]].copy()
    table["label"] = values
    return table, spec


def sql_label(atlas: str | Path | Atlas, expression: str) -> tuple[pd.DataFrame, TokenLabel]:
    """A label from a DuckDB expression over the ``tokens`` table.

    A boolean expression gives a binary classification label; an integer one classes; a
    floating one a regression target.

    Examples:
        >>> table, spec = sql_label("my-atlas", "token in ('def', 'class')")  # doctest: +SKIP
    """
    a = open_atlas(atlas)
    try:
        table = a.query(
            f"select doc, pos, token_id, token, ({expression}) as label from tokens "
            "order by doc, pos"
        )
    except Exception as exc:  # DuckDB parser/binder errors
        raise ConceptError(
            f"The label expression {expression!r} does not run over the tokens table "
            f"(columns doc, pos, token_id, token, text): {exc}"
        ) from None
    kind = table["label"].dtype.kind
    if table["label"].isna().any():
        raise ConceptError(
            f"The label expression {expression!r} is NULL for {int(table['label'].isna().sum())} "
            "tokens; wrap it in coalesce(..., false)."
        )
    task: Task = "regression" if kind == "f" else "classification"
    return table, TokenLabel(f"sql:{expression}", task, expression, lambda t, d: t["label"])
