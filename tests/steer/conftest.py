"""Fixtures for steering tests: tiny models, token-id data, a synthetic atlas."""

from __future__ import annotations

import pytest
from helpers import tiny_gpt2


@pytest.fixture
def gpt2():
    return tiny_gpt2()


@pytest.fixture
def atlas(tmp_path):
    from neuronatlas.viewer import write_synthetic_atlas

    return write_synthetic_atlas(tmp_path / "atlas", n_layers=1, n_units=4, n_docs=4, doc_len=8)
