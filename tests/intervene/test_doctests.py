"""The examples in the docstrings of neuronatlas.intervene run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["", "._edits", "._intervene", "._layout"])
def test_docstring_examples(name):
    module = importlib.import_module(f"neuronatlas.intervene{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
