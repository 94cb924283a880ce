"""The bundled corpus: Python's own documentation, deterministic, big enough, side-effect free."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest

from neuronatlas.data import corpus_fingerprint, load_corpus, python_docs_corpus, text_batches


@pytest.fixture(scope="module")
def pydocs():
    return list(python_docs_corpus())


def test_topics_then_modules_in_sorted_order(pydocs):
    from pydoc_data.topics import topics

    sources = [d.source for d in pydocs]
    assert len(sources) == len(set(sources))
    n_topics = len(topics)
    assert sources[:n_topics] == [f"topic:{k}" for k in sorted(topics)]
    assert [d.text for d in pydocs[:n_topics]] == [topics[k] for k in sorted(topics)]
    modules = [s.removeprefix("module:") for s in sources[n_topics:]]
    assert all(s.startswith("module:") for s in sources[n_topics:])
    tops = [m for m in modules if "." not in m]
    assert tops == sorted(tops)
    for expected in ("json", "json.decoder", "collections", "math", "itertools", "sys", "os"):
        assert expected in modules
    banned = ("antigravity", "this", "tkinter", "idlelib", "test", "turtle", "__main__")
    assert not [m for m in modules if m.split(".")[0] in banned or m.startswith("_")]
    assert not [m for m in modules if m.split(".")[-1] in ("test", "tests", "idle_test")]
    assert "unittest" in modules and "doctest" in modules


def test_module_documents_hold_docstrings_and_signatures(pydocs):
    by_source = {d.source: d.text for d in pydocs}
    json_doc = by_source["module:json"]
    assert json_doc.startswith("json\n\nJSON (JavaScript Object Notation)")
    assert "json.dumps(obj, *, skipkeys=False" in json_doc  # read from source, not imported
    math_doc = by_source["module:math"]  # compiled: read after import
    assert "math.sqrt(x, /)\n\nReturn the square root of x." in math_doc
    assert "class collections.OrderedDict" in by_source["module:collections"]


def test_same_documents_in_a_fresh_interpreter_without_side_effects(pydocs):
    code = textwrap.dedent(
        """
        import sys
        from neuronatlas.data import corpus_fingerprint, python_docs_corpus
        print(corpus_fingerprint(python_docs_corpus()))
        print(sorted(m for m in ("antigravity", "this", "tkinter", "idlelib", "turtle", "readline")
                     if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    digest, imported = out.stdout.split("\n")[:2]
    assert digest == corpus_fingerprint(pydocs)
    assert imported == "[]"
    assert out.stderr == ""  # nothing printed by importing modules


def test_pydocs_is_the_default_corpus(pydocs):
    n = len(pydocs) // 4  # a prefix is enough: the order and text are checked above
    for spec in (None, "pydocs"):
        assert list(itertools.islice(load_corpus(spec), n)) == pydocs[:n]


def test_enough_minilm_tokens(pydocs, minilm_tokenizer):
    tb = text_batches(pydocs, minilm_tokenizer, window=256)
    n_windows = sum(1 for _ in tb.windows())
    assert tb.summary.complete and tb.summary.n_docs == n_windows
    assert tb.summary.n_tokens >= 200_000
    # the windows count every token of every document once (plus [CLS] and [SEP] per window)
    # (the tokenizer's own settings truncate to 128 tokens; windowing must not)
    ids = minilm_tokenizer([d.text for d in pydocs], add_special_tokens=False, verbose=False)
    assert tb.summary.n_tokens == sum(len(x) for x in ids["input_ids"]) + 2 * n_windows
