"""Corpora: documents read lazily from files, folders, tables, Hugging Face datasets or lists."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronatlas._lazy import require
from neuronatlas.errors import DataError, MissingExtraError

__all__ = [
    "Corpus",
    "Document",
    "Fingerprint",
    "corpus_fingerprint",
    "load_corpus",
]

TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES + CSV_SUFFIXES + PARQUET_SUFFIXES
HF_SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")

# Text files longer than this are yielded as consecutive parts (split after a line break), so a
# single huge file never has to sit in memory as one string.
TEXT_PART_CHARS = 16 * 1024 * 1024


@dataclass(frozen=True)
class Document:
    """One document of a corpus: where it comes from and its text.

    Attributes:
        source: a stable name for the document (file name, ``file#row``, ``topic:NAME``, ...).
        text: the text.
    """

    source: str
    text: str


class Corpus:
    """A re-iterable, lazy sequence of :class:`Document`.

    Each iteration reads the underlying source again from the start (files are streamed, never
    held in memory as a whole). Documents whose text is empty or only whitespace are skipped;
    a corpus with no non-empty document raises :class:`DataError` when iterated.

    Args:
        description: what the corpus is, for manifests and messages.
        factory: a callable that returns a fresh iterator of documents.

    Examples:
        >>> c = Corpus("two strings", lambda: iter([Document("a", "x"), Document("b", " ")]))
        >>> [d.source for d in c]
        ['a']
    """

    def __init__(self, description: str, factory: Callable[[], Iterator[Document]]) -> None:
        self.description = description
        self._factory = factory

    def __iter__(self) -> Iterator[Document]:
        n = 0
        for doc in self._factory():
            if doc.text and not doc.text.isspace():
                n += 1
                yield doc
        if n == 0:
            raise DataError(
                f"The corpus {self.description} has no non-empty document. Expected at least one "
                "document with text; check the path, the text column and the filter."
            )

    def first(self) -> Document:
        """The first non-empty document (raises :class:`DataError` for an empty corpus)."""
        return next(iter(self))

    def __repr__(self) -> str:
        return f"Corpus({self.description})"


class Fingerprint:
    """Incremental sha256 over documents, independent of how they are batched.

    Each document contributes its source and text, each length-prefixed, so no two different
    document sequences hash alike by concatenation.

    Examples:
        >>> f = Fingerprint()
        >>> f.update(Document("a", "hello"))
        >>> f.hexdigest() == corpus_fingerprint([Document("a", "hello")])
        True
    """

    def __init__(self) -> None:
        self._h = hashlib.sha256(b"neuronatlas.corpus.v1\0")
        self.n_documents = 0

    def update(self, doc: Document) -> None:
        for part in (doc.source, doc.text):
            raw = part.encode("utf-8", "surrogatepass")
            self._h.update(len(raw).to_bytes(8, "little"))
            self._h.update(raw)
        self.n_documents += 1

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def corpus_fingerprint(docs: Iterable[Document]) -> str:
    """sha256 (hex) of a sequence of documents, for the atlas manifest.

    Equal for equal ``(source, text)`` sequences; streams, so the corpus is never held in memory.

    Examples:
        >>> a = corpus_fingerprint(load_corpus(["x", "y"]))
        >>> a == corpus_fingerprint(load_corpus(["x", "y"])), a == corpus_fingerprint(load_corpus(["y", "x"]))
        (True, False)
    """
    f = Fingerprint()
    for doc in docs:
        f.update(doc)
    return f.hexdigest()


def load_corpus(
    spec: Any = None,
    *,
    text_column: str = "text",
    split: str = "train",
    config: str | None = None,
    encoding: str = "utf-8",
) -> Corpus:
    """Open a corpus from one of many kinds of sources, lazily.

    Args:
        spec: what to read:

            - ``None`` or ``"pydocs"``: the documentation that ships with Python
              (:func:`python_docs_corpus`);
            - a path to a text file (``.txt .text .md .rst``): the whole file is one document
              (files over 16 Mi characters are split after a line break into parts
              ``name``, ``name~1``, ...);
            - a JSONL file (``.jsonl .ndjson``): one document per line, an object with
              ``text_column`` (or a bare JSON string), streamed line by line;
            - a CSV/TSV file (``.csv .tsv``) with a ``text_column`` header, streamed by the csv module;
            - a Parquet file (``.parquet .pq``) with a string ``text_column``, streamed in record
              batches with pyarrow;
            - a folder: a dataset saved with ``datasets``' ``save_to_disk``, or else every file
              with one of the suffixes above, in sorted order of their relative paths;
            - any other string: a Hugging Face dataset name, loaded with ``datasets``: streamed
              when online; offline (``HF_DATASETS_OFFLINE``/``HF_HUB_OFFLINE``), read from the
              prepared Arrow files of the local cache, memory-mapped, in slices;
            - a list or tuple of strings (or of :class:`Document`): one document each;
            - a :class:`Corpus`: returned as is.
        text_column: the column that holds the text (tables and datasets).
        split: the split of a Hugging Face dataset.
        config: the configuration name of a Hugging Face dataset.
        encoding: the encoding of text, JSONL and CSV files.

    Returns:
        A :class:`Corpus`; sources are file names (relative to a folder), ``file#row`` for rows of
        a table (row = 0-based record index; blank JSONL lines are not records),
        ``name/split#row`` for datasets and ``list#i`` for lists.

    Raises:
        DataError: the file does not exist or is unreadable, the text column is missing (the
            message lists the columns there are), the type of ``spec`` is not supported, or the
            corpus has no non-empty document.
        MissingExtraError: a Hugging Face dataset was asked for but ``datasets`` is not installed.

    Examples:
        >>> [d.text for d in load_corpus(["first document", "second one"])]
        ['first document', 'second one']
    """
    if isinstance(spec, Corpus):
        return spec
    if spec is None or (isinstance(spec, str) and spec == "pydocs"):
        from neuronatlas.data._pydocs import python_docs_corpus

        return python_docs_corpus()
    if isinstance(spec, (list, tuple)):
        corpus = _list_corpus(spec)
    elif isinstance(spec, (str, os.PathLike)):
        path = Path(spec).expanduser()
        if path.exists():
            corpus = _path_corpus(path, text_column=text_column, encoding=encoding)
        elif isinstance(spec, os.PathLike) or _looks_like_path(str(spec)):
            raise DataError(
                f"The corpus file {str(spec)!r} does not exist. Expected an existing text, JSONL, "
                f"CSV or Parquet file or a folder; check the path (working directory: {os.getcwd()})."
            )
        else:
            corpus = _hf_corpus(str(spec), text_column=text_column, split=split, config=config)
    else:
        raise DataError(
            f"A corpus must be a path, a dataset name, 'pydocs', None or a list of strings; got "
            f"{type(spec).__name__}. Wrap texts in a list, or pass a path to a file."
        )
    corpus.first()  # fail now, not in the middle of a mapping run, on an empty corpus
    return corpus


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith((".", "~", os.sep, "/"))
        or spec.lower().endswith(SUPPORTED_SUFFIXES)
        or spec.count("/") > 1
        or "\\" in spec
    )


def _list_corpus(items: list[Any] | tuple[Any, ...]) -> Corpus:
    for i, item in enumerate(items):
        if not isinstance(item, (str, Document)):
            raise DataError(
                f"A corpus list must hold strings (or Documents); item {i} is a "
                f"{type(item).__name__}. Convert the items to str first."
            )
    items = list(items)

    def gen() -> Iterator[Document]:
        for i, item in enumerate(items):
            yield item if isinstance(item, Document) else Document(f"list#{i}", item)

    return Corpus(f"list of {len(items)} texts", gen)


def _path_corpus(path: Path, *, text_column: str, encoding: str) -> Corpus:
    if path.is_dir():
        if any((path / m).is_file() for m in HF_SAVED_MARKERS):
            return _hf_saved_corpus(path, text_column=text_column)
        files = sorted(
            (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES),
            key=lambda p: p.relative_to(path).as_posix(),
        )
        if not files:
            found = sorted({p.suffix or p.name for p in path.rglob("*") if p.is_file()})[:10]
            raise DataError(
                f"The folder {str(path)!r} holds no corpus file. Expected files ending in "
                f"{', '.join(SUPPORTED_SUFFIXES)}; found {found or 'no files'}."
            )
        for f in files:  # check every table's text column before reading anything
            _check_file(f, text_column=text_column, encoding=encoding)

        def gen() -> Iterator[Document]:
            for f in files:
                yield from _read_file(f, f.relative_to(path).as_posix(), text_column, encoding)

        return Corpus(f"folder {str(path)!r} ({len(files)} files)", gen)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"Cannot read {str(path)!r} as a corpus: unknown suffix {path.suffix!r}. Expected one "
            f"of {', '.join(SUPPORTED_SUFFIXES)}, a folder, or a list of strings."
        )
    _check_file(path, text_column=text_column, encoding=encoding)
    return Corpus(f"file {str(path)!r}", lambda: _read_file(path, path.name, text_column, encoding))


def _missing_column(path: Path | str, text_column: str, columns: Iterable[str]) -> DataError:
    from neuronatlas.errors import closest

    columns = list(columns)
    near = closest(text_column, columns, n=3)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    return DataError(
        f"{str(path)!r} has no text column {text_column!r}; its columns are {columns}.{hint} "
        "Pass text_column=... to choose the column that holds the text."
    )


def _open_error(path: Path, exc: Exception) -> DataError:
    return DataError(
        f"Cannot read the corpus file {str(path)!r}: {exc}. Check the file and its permissions."
    )


def _check_file(path: Path, *, text_column: str, encoding: str) -> None:
    """Fail early on unreadable files and missing text columns, reading only a header."""
    suffix = path.suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            pq = require("pyarrow.parquet")
            schema = pq.read_schema(path)
            if text_column not in schema.names:
                raise _missing_column(path, text_column, schema.names)
            pa = require("pyarrow")
            kind = schema.field(text_column).type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                raise DataError(
                    f"Column {text_column!r} of {str(path)!r} holds {kind} values; expected "
                    "strings. Choose a text column with text_column=..."
                )
        elif suffix in CSV_SUFFIXES:
            with open(path, newline="", encoding=encoding) as fh:
                header = next(csv.reader(fh, dialect=_dialect(path)), None)
            if header is None:
                raise DataError(f"The CSV file {str(path)!r} is empty; expected a header row.")
            if text_column not in header:
                raise _missing_column(path, text_column, header)
        elif suffix in JSONL_SUFFIXES:
            with open(path, encoding=encoding) as fh:
                for lineno, line in enumerate(fh, 1):
                    if line.strip():
                        _jsonl_text(line, path, lineno, text_column)
                        break
        else:
            with open(path, encoding=encoding) as fh:
                fh.read(4096)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(
            f"The corpus file {str(path)!r} is not valid {encoding} text ({exc}). Convert it to "
            "UTF-8, or pass encoding=... to load_corpus."
        ) from exc
    except Exception as exc:  # OSError, ArrowInvalid, csv.Error: all mean "cannot read this file"
        raise _open_error(path, exc) from exc


def _dialect(path: Path) -> str:
    return "excel-tab" if path.suffix.lower() == ".tsv" else "excel"


def _jsonl_text(line: str, path: Path, lineno: int, text_column: str) -> str | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"Line {lineno} of {str(path)!r} is not valid JSON ({exc}). Expected one JSON object "
            "(or string) per line."
        ) from exc
    if isinstance(record, str):
        return record
    if not isinstance(record, dict):
        raise DataError(
            f"Line {lineno} of {str(path)!r} holds a JSON {type(record).__name__}; expected an "
            f"object with a {text_column!r} field, or a string."
        )
    if text_column not in record:
        raise _missing_column(f"{path}, line {lineno}", text_column, record.keys())
    return _as_text(record[text_column], f"{path}, line {lineno}", text_column)


def _as_text(value: Any, where: str, text_column: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise DataError(
        f"{where}: column {text_column!r} holds a {type(value).__name__}; expected a string. "
        "Choose a text column with text_column=..."
    )


def _read_file(path: Path, name: str, text_column: str, encoding: str) -> Iterator[Document]:
    suffix = path.suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            yield from _read_parquet(path, name, text_column)
        elif suffix in CSV_SUFFIXES:
            yield from _read_csv(path, name, text_column, encoding)
        elif suffix in JSONL_SUFFIXES:
            yield from _read_jsonl(path, name, text_column, encoding)
        else:
            yield from _read_text(path, name, encoding)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(
            f"The corpus file {str(path)!r} is not valid {encoding} text ({exc}). Convert it to "
            "UTF-8, or pass encoding=... to load_corpus."
        ) from exc
    except Exception as exc:
        raise _open_error(path, exc) from exc


def _read_text(path: Path, name: str, encoding: str) -> Iterator[Document]:
    with open(path, encoding=encoding, newline="") as fh:
        part, carry = 0, ""
        while True:
            block = fh.read(TEXT_PART_CHARS)
            text = carry + block
            if len(block) < TEXT_PART_CHARS:  # end of file: the rest is the last part
                if text:
                    yield Document(name if part == 0 else f"{name}~{part}", text)
                return
            cut = text.rfind("\n") + 1
            if cut == 0:  # no line break yet: keep reading until there is one
                carry = text
                continue
            yield Document(name if part == 0 else f"{name}~{part}", text[:cut])
            part, carry = part + 1, text[cut:]


def _read_jsonl(path: Path, name: str, text_column: str, encoding: str) -> Iterator[Document]:
    with open(path, encoding=encoding) as fh:
        row = 0
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            text = _jsonl_text(line, path, lineno, text_column)
            if text is not None:
                yield Document(f"{name}#{row}", text)
            row += 1


def _read_csv(path: Path, name: str, text_column: str, encoding: str) -> Iterator[Document]:
    csv.field_size_limit(min(2**31 - 1, TEXT_PART_CHARS * 4))
    with open(path, newline="", encoding=encoding) as fh:
        reader = csv.DictReader(fh, dialect=_dialect(path))
        for row, record in enumerate(reader):
            text = record.get(text_column)
            if text:
                yield Document(f"{name}#{row}", text)


def _read_parquet(path: Path, name: str, text_column: str) -> Iterator[Document]:
    pq = require("pyarrow.parquet")
    row = 0
    with pq.ParquetFile(path) as f:
        for record_batch in f.iter_batches(batch_size=1024, columns=[text_column]):
            for text in record_batch.column(0).to_pylist():
                if text is not None:
                    yield Document(f"{name}#{row}", text)
                row += 1


def _datasets_module() -> Any:
    try:
        return require("datasets")
    except MissingExtraError as exc:
        raise MissingExtraError(
            f"Reading a Hugging Face dataset needs the 'datasets' package. {exc}"
        ) from exc


def _hf_saved_corpus(path: Path, *, text_column: str) -> Corpus:
    datasets = _datasets_module()
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(
            f"Cannot read the saved dataset folder {str(path)!r}: {exc}. Expected a folder written "
            "by datasets' save_to_disk."
        ) from exc
    if isinstance(ds, datasets.DatasetDict):
        splits = sorted(ds)
        raise DataError(
            f"{str(path)!r} holds several splits {splits}; expected one dataset. Pass the split's "
            f"folder, e.g. {str(path / splits[0])!r}."
        )
    if text_column not in ds.column_names:
        raise _missing_column(path, text_column, ds.column_names)
    name = path.name

    def gen() -> Iterator[Document]:
        for row, text in enumerate(_iter_column(ds, text_column)):
            if text is not None:
                yield Document(f"{name}#{row}", _as_text(text, f"{path} row {row}", text_column))

    return Corpus(f"saved dataset {str(path)!r} ({ds.num_rows} rows)", gen)


def _iter_column(ds: Any, column: str) -> Iterator[Any]:
    """Stream one column of an in-memory-mapped ``datasets.Dataset`` in slices."""
    step = 1024
    for start in range(0, ds.num_rows, step):
        yield from ds[start : start + step][column]


def _hf_corpus(name: str, *, text_column: str, split: str, config: str | None) -> Corpus:
    datasets = _datasets_module()
    flags = (os.environ.get(v, "0").upper() for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
    offline = any(f in {"1", "ON", "YES", "TRUE"} for f in flags)
    # Online: stream (nothing is downloaded up front). Offline: the prepared Arrow files of the
    # local cache, memory-mapped and read in slices (streaming would need the Hub).
    try:
        ds = datasets.load_dataset(name, config, split=split, streaming=not offline)
    except Exception as exc:
        where = "offline, from the local cache" if offline else "from the Hub or the local cache"
        raise DataError(
            f"Cannot load the Hugging Face dataset {name!r} (config {config!r}, split "
            f"{split!r}) {where}: {type(exc).__name__}: {exc}. Expected a dataset name that "
            "is in the local cache, or pass a local file or folder (text, JSONL, CSV, "
            "Parquet, or a save_to_disk folder) instead."
        ) from exc
    columns = getattr(ds, "column_names", None)
    if columns is not None and text_column not in columns:
        raise _missing_column(name, text_column, columns)

    def texts() -> Iterator[Any]:
        if offline:
            yield from _iter_column(ds, text_column)
            return
        for record in ds:
            if text_column not in record:
                raise _missing_column(name, text_column, record.keys())
            yield record[text_column]

    def gen() -> Iterator[Document]:
        for row, value in enumerate(texts()):
            text = _as_text(value, f"{name} row {row}", text_column)
            if text is not None:
                yield Document(f"{name}/{split}#{row}", text)

    return Corpus(f"Hugging Face dataset {name!r} ({split})", gen)
