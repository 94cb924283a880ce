"""Fixtures of the taxonomy tests: the planted model and its corpus (see ``_planted.py``)."""

from __future__ import annotations

import pytest
from units._planted import PlantedLM, planted_corpus


@pytest.fixture(scope="session")
def corpus():
    return planted_corpus()


@pytest.fixture(scope="session")
def planted():
    return PlantedLM(seed=0).eval()
