"""Importing neuronatlas.concepts loads neither scikit-learn nor matplotlib."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, neuronatlas.concepts; "
        "print(sorted(m for m in ('sklearn', 'matplotlib', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
