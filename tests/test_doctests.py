"""Every example in a docstring of neuronatlas runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import neuronatlas

# modules whose examples need something a test machine may not have
SKIP: set[str] = set()


def _modules_with_examples() -> list[str]:
    names = [
        m.name
        for m in pkgutil.walk_packages(neuronatlas.__path__, "neuronatlas.")
        if m.name not in SKIP
    ]
    with_examples = []
    for name in names:
        spec = importlib.util.find_spec(name)
        source = spec.loader.get_source(name) if spec and spec.loader else None  # type: ignore[union-attr]
        if source and ">>> " in source:
            with_examples.append(name)
    return sorted(with_examples)


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
