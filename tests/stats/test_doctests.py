"""The examples in the docstrings of neuronatlas.stats run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "_activity",
    "_base",
    "_extremes",
    "_moments",
    "_nonfinite",
    "_quantiles",
    "_topk",
    "_unit_stats",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"neuronatlas.stats.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
