"""The examples in the docstrings of neuronatlas.compare run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["_cca", "_cka", "_pages", "_rsa", "_shape", "_stats", "_tda"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"neuronatlas.compare.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
