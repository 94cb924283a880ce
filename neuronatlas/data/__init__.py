"""Corpora and batching: what the model is called with, and the ``(doc, pos)`` of every position.

- corpora: :func:`load_corpus` (text, JSONL, CSV, Parquet, folders, Hugging Face datasets, lists)
  and :func:`python_docs_corpus` (the bundled demo corpus), each a lazy :class:`Corpus` of
  :class:`Document`;
- text: :func:`text_batches` cuts documents into windows (one window = one atlas ``doc``) and
  pads them into :class:`Batch` es;
- tensors: :func:`tensor_batches` wraps inputs of plain ``nn.Module``s;
  :func:`bookkeeping_for` matches a batch to an activation's positions.

See ``docs/data.md``.
"""

from __future__ import annotations

from neuronatlas.data._batch import Batch as Batch
from neuronatlas.data._batch import bookkeeping_for as bookkeeping_for
from neuronatlas.data._corpus import Corpus as Corpus
from neuronatlas.data._corpus import Document as Document
from neuronatlas.data._corpus import Fingerprint as Fingerprint
from neuronatlas.data._corpus import corpus_fingerprint as corpus_fingerprint
from neuronatlas.data._corpus import load_corpus as load_corpus
from neuronatlas.data._pydocs import python_docs_corpus as python_docs_corpus
from neuronatlas.data._tensors import load_tensors as load_tensors
from neuronatlas.data._tensors import tensor_batches as tensor_batches
from neuronatlas.data._text import CorpusSummary as CorpusSummary
from neuronatlas.data._text import TextBatches as TextBatches
from neuronatlas.data._text import Window as Window
from neuronatlas.data._text import text_batches as text_batches

__all__ = [
    "Batch",
    "Corpus",
    "CorpusSummary",
    "Document",
    "Fingerprint",
    "TextBatches",
    "Window",
    "bookkeeping_for",
    "corpus_fingerprint",
    "load_corpus",
    "load_tensors",
    "python_docs_corpus",
    "tensor_batches",
    "text_batches",
]
