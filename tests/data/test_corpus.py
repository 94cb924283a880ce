"""Corpora from every kind of source: round trips through real files, and clear errors."""

from __future__ import annotations

import csv
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neuronatlas.data import Corpus, Document, Fingerprint, corpus_fingerprint, load_corpus
from neuronatlas.data import _corpus as corpus_module
from neuronatlas.errors import DataError, MissingExtraError

TEXTS = [
    "First document.\nWith two lines.",
    'Second, with "quotes", commas; and\nnewlines\n\nand a blank line.',
    "naïve café — 😀 日本語",
]


def texts_of(corpus) -> list[str]:
    return [d.text for d in corpus]


def test_list_of_strings_and_documents():
    c = load_corpus([*TEXTS, "", "   "])
    assert texts_of(c) == TEXTS
    assert [d.source for d in c] == ["list#0", "list#1", "list#2"]
    docs = [Document("mine", "x")]
    assert list(load_corpus(docs)) == docs
    assert load_corpus(c) is c


def test_text_file_is_one_document(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text(TEXTS[1] + "\r\n", encoding="utf-8")
    assert list(load_corpus(f)) == [Document("a.txt", TEXTS[1] + "\r\n")]
    assert list(load_corpus(str(f))) == list(load_corpus(f))


def test_huge_text_file_comes_in_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "TEXT_PART_CHARS", 64)
    text = (
        "".join(f"line {i} " + "word " * (i % 7) + "\n" for i in range(200)) + "no newline at end"
    )
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    parts = list(load_corpus(tmp_path / "big.txt"))
    assert "".join(p.text for p in parts) == text
    assert [p.source for p in parts[:3]] == ["big.txt", "big.txt~1", "big.txt~2"]
    assert all(p.text.endswith("\n") for p in parts[:-1])
    assert max(len(p.text) for p in parts) < 2 * 64 + 40


def test_folder_of_text_files_in_sorted_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text(TEXTS[2], encoding="utf-8")
    (tmp_path / "b" / "10.txt").write_text(TEXTS[1], encoding="utf-8")
    (tmp_path / "a.txt").write_text(TEXTS[0], encoding="utf-8")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    c = load_corpus(tmp_path)
    assert [(d.source, d.text) for d in c] == [
        ("a.txt", TEXTS[0]),
        ("b/10.txt", TEXTS[1]),
        ("b/2.txt", TEXTS[2]),
    ]


def test_jsonl_objects_strings_and_blank_lines(tmp_path):
    f = tmp_path / "c.jsonl"
    lines = [
        json.dumps({"text": TEXTS[0], "id": 1}),
        "",
        json.dumps(TEXTS[1]),
        json.dumps({"text": None}),
        json.dumps({"text": TEXTS[2]}),
    ]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert [(d.source, d.text) for d in load_corpus(f)] == [
        ("c.jsonl#0", TEXTS[0]),
        ("c.jsonl#1", TEXTS[1]),
        ("c.jsonl#3", TEXTS[2]),
    ]
    f2 = tmp_path / "d.jsonl"
    f2.write_text(json.dumps({"body": "x"}) + "\n", encoding="utf-8")
    assert texts_of(load_corpus(f2, text_column="body")) == ["x"]


@pytest.mark.parametrize("suffix,dialect", [(".csv", "excel"), (".tsv", "excel-tab")])
def test_csv_and_tsv(tmp_path, suffix, dialect):
    f = tmp_path / f"t{suffix}"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, dialect=dialect)
        w.writerow(["id", "text"])
        for i, t in enumerate(TEXTS):
            w.writerow([i, t])
        w.writerow([9, ""])
    assert [(d.source, d.text) for d in load_corpus(f)] == [
        (f"t{suffix}#{i}", t) for i, t in enumerate(TEXTS)
    ]


def test_parquet_streamed_over_row_groups(tmp_path):
    f = tmp_path / "p.parquet"
    many = [f"document number {i}" if i % 5 else None for i in range(3000)]
    table = pa.table({"n": list(range(3000)), "body": many})
    pq.write_table(table, f, row_group_size=700)
    c = load_corpus(f, text_column="body")
    docs = list(c)
    assert [d.text for d in docs] == [t for t in many if t is not None]
    assert docs[0].source == "p.parquet#1" and docs[-1].source == "p.parquet#2999"


def test_folder_of_tables_and_text(tmp_path):
    pq.write_table(pa.table({"text": ["from parquet"]}), tmp_path / "1.parquet")
    (tmp_path / "2.jsonl").write_text(json.dumps({"text": "from jsonl"}) + "\n", encoding="utf-8")
    (tmp_path / "3.txt").write_text("from text", encoding="utf-8")
    assert texts_of(load_corpus(tmp_path)) == ["from parquet", "from jsonl", "from text"]


def test_saved_hugging_face_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": [TEXTS[0], None, "", TEXTS[2]], "label": [0, 1, 2, 3]})
    ds.save_to_disk(str(tmp_path / "saved"))
    c = load_corpus(tmp_path / "saved")
    assert [(d.source, d.text) for d in c] == [("saved#0", TEXTS[0]), ("saved#3", TEXTS[2])]
    with pytest.raises(DataError, match=r"no text column 'txt'.*\['text', 'label'\].*'text'"):
        load_corpus(tmp_path / "saved", text_column="txt")
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(DataError, match=r"several splits \['train'\]"):
        load_corpus(tmp_path / "dict")
    assert texts_of(load_corpus(tmp_path / "dict" / "train")) == [TEXTS[0], TEXTS[2]]


def test_hub_dataset_offline_is_a_clear_error():
    pytest.importorskip("datasets")
    with pytest.raises(DataError, match=r"(?s)nonexistent-org/nonexistent-corpus.*local cache"):
        load_corpus("nonexistent-org/nonexistent-corpus")


def test_missing_datasets_gives_the_install_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # what an absent package looks like
    with pytest.raises(MissingExtraError, match=r"pip install .neuronatlas\[hf\]."):
        load_corpus("some-dataset")


def test_corpus_is_lazy_and_reiterable(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text("\n".join(json.dumps({"text": t}) for t in TEXTS), encoding="utf-8")
    c = load_corpus(f)
    it = iter(c)
    assert next(it).text == TEXTS[0]  # one record read, not the file
    assert texts_of(c) == TEXTS == texts_of(c)


@pytest.mark.parametrize(
    "spec,match",
    [
        ("missing-folder/file.txt", "does not exist"),
        ("./nope", "does not exist"),
        (42, "got int"),
        ([1, 2], "item 0 is a int"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(DataError, match=match):
        load_corpus(spec)


def test_file_errors(tmp_path):
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"unknown suffix '\.docx'"):
        load_corpus(tmp_path / "x.docx")
    (tmp_path / "latin.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match=r"not valid utf-8 text.*encoding="):
        load_corpus(tmp_path / "latin.txt")
    assert texts_of(load_corpus(tmp_path / "latin.txt", encoding="latin-1")) == ["café"]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"Line 2 .* not valid JSON"):
        list(load_corpus(tmp_path / "bad.jsonl"))
    (tmp_path / "list.jsonl").write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError, match="holds a JSON list"):
        load_corpus(tmp_path / "list.jsonl")
    (tmp_path / "num.jsonl").write_text('{"text": 3}\n', encoding="utf-8")
    with pytest.raises(DataError, match="holds a int; expected a string"):
        load_corpus(tmp_path / "num.jsonl")
    (tmp_path / "empty.txt").write_text("  \n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no non-empty document"):
        load_corpus(tmp_path / "empty.txt")
    (tmp_path / "e.csv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="is empty; expected a header"):
        load_corpus(tmp_path / "e.csv")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="Cannot read the corpus file"):
        load_corpus(tmp_path / "garbage.parquet")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(b"")
    with pytest.raises(DataError, match=r"holds no corpus file.*found \['\.bin'\]"):
        load_corpus(tmp_path / "sub")


def test_missing_text_column_lists_the_columns(tmp_path):
    pq.write_table(pa.table({"content": ["a"], "id": [1]}), tmp_path / "t.parquet")
    with pytest.raises(
        DataError, match=r"no text column 'text'; its columns are \['content', 'id'\]"
    ):
        load_corpus(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="holds int64 values; expected strings"):
        load_corpus(tmp_path / "t.parquet", text_column="id")
    (tmp_path / "t.csv").write_text("id,txt\n1,hello\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"\['id', 'txt'\]\. Did you mean 'txt'\?"):
        load_corpus(tmp_path / "t.csv")
    (tmp_path / "t.jsonl").write_text('{"body": "a"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1.*\['body'\]"):
        load_corpus(tmp_path / "t.jsonl")


def test_fingerprint_depends_on_order_and_boundaries_only():
    a = corpus_fingerprint([Document("s", "ab"), Document("t", "c")])
    assert a == corpus_fingerprint(iter([Document("s", "ab"), Document("t", "c")]))
    assert a != corpus_fingerprint([Document("s", "a"), Document("t", "bc")])
    assert a != corpus_fingerprint([Document("t", "c"), Document("s", "ab")])
    assert a != corpus_fingerprint([Document("s", "ab"), Document("u", "c")])
    assert len(a) == 64 and int(a, 16) >= 0
    f = Fingerprint()
    assert f.hexdigest() == corpus_fingerprint([]) and f.n_documents == 0


def test_corpus_repr_and_empty_factory():
    c = Corpus("nothing", lambda: iter(()))
    assert "nothing" in repr(c)
    with pytest.raises(DataError, match="nothing has no non-empty document"):
        c.first()
