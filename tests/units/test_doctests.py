"""The examples in the docstrings of neuronatlas.units run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "_batches",
    "_correlations",
    "_labels",
    "_sketch",
    "_survey",
    "_taxonomy_stats",
    "_vocab",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"neuronatlas.units.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
