"""Token labels: the literal-block rule on hand-made text, and keyword labels against a
reference built with ``keyword.iskeyword`` over identifiers of the source text."""

from __future__ import annotations

import keyword
import re

import numpy as np
import pandas as pd
import pytest

from neuronatlas.concepts import code_lines, sql_label, token_labels
from neuronatlas.concepts._common import ConceptError


def test_literal_blocks_doctests_and_lists():
    text = "\n".join(
        [
            "Prose that introduces code:",  # 0
            "",  # 1
            "   x = 1",  # 2 code
            "",  # 3
            "       y = 2",  # 4 code (deeper, same block)
            "Back to prose.",  # 5
            "",  # 6
            "* A bullet:",  # 7
            "",  # 8
            "  * a nested bullet, not code",  # 9
            "    continued",  # 10
            "",  # 11
            "term",  # 12
            "   definition, same paragraph",  # 13
            "",  # 14
            ">>> f(1)",  # 15 code
            "2",  # 16 code (doctest output)
            "",  # 17
            "After.",  # 18
        ]
    )
    expected = {2, 4, 15, 16}
    assert np.flatnonzero(code_lines(text)).tolist() == sorted(expected)


def _reference_keyword(atlas_path) -> pd.Series:
    """Per token: does its text overlap an identifier that keyword.iskeyword accepts?"""
    tokens = pd.read_parquet(atlas_path / "tokens.parquet").sort_values(["doc", "pos"])
    docs = pd.read_parquet(atlas_path / "docs.parquet")
    out = pd.Series(False, index=pd.MultiIndex.from_frame(tokens[["doc", "pos"]]))
    for _, g in docs.sort_values(["source", "source_offset"]).groupby("source"):
        rows = tokens[tokens["doc"].isin(g["doc"])]
        rows = rows.set_index("doc").loc[g["doc"]].reset_index()
        special = rows["text"].str.fullmatch(r"\[[A-Z]+\]") & (rows["text"] == rows["token"])
        rows = rows[~special]
        text, spans = "", []
        for t in rows["text"]:
            spans.append((len(text) + len(t) - len(t.lstrip()), len(text) + len(t)))
            text += t
        words = [
            (m.start(), m.end())
            for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*", text)
            if keyword.iskeyword(m.group())
        ]
        for (d, p), (a, b) in zip(zip(rows["doc"], rows["pos"], strict=True), spans, strict=True):
            out[(d, p)] = any(s < b and e > a for s, e in words)
    return out


def test_keyword_label_matches_reference(tiny_atlas):
    table, spec = token_labels(tiny_atlas, "keyword")
    assert spec.task == "classification"
    ref = _reference_keyword(tiny_atlas)
    got = table.set_index(["doc", "pos"])["label"]
    assert got.sum() > 20
    assert got.equals(ref.loc[got.index].astype(bool))


def test_code_label_marks_code_tokens(tiny_atlas):
    table, _ = token_labels(tiny_atlas, "code")
    code_tokens = set(table.loc[table["label"], "token"])
    prose_tokens = set(table.loc[~table["label"], "token"])
    assert {"print", "range", "raise", "pass"} <= code_tokens
    assert {"sequence", "bound", "suite"} <= prose_tokens
    assert not table.loc[table["token"].isin(["[CLS]", "[SEP]"]), "label"].any()
    both, _ = token_labels(tiny_atlas, "keyword_in_code")
    kw, _ = token_labels(tiny_atlas, "keyword")
    assert (both["label"] == (kw["label"] & table["label"])).all()


def test_sql_and_position_labels(tiny_atlas):
    table, spec = sql_label(tiny_atlas, "token in ('def', 'for')")
    assert spec.task == "classification"
    assert table["label"].sum() == table["token"].isin(["def", "for"]).sum() > 0
    pos, spec = token_labels(tiny_atlas, "position")
    assert spec.task == "regression"
    assert (pos["label"] == pos["pos"]).all()
    with pytest.raises(ConceptError, match="Known labels"):
        token_labels(tiny_atlas, "keywords")
    with pytest.raises(ConceptError, match="does not run"):
        sql_label(tiny_atlas, "no_such_column = 1")
