"""Importing neuronatlas is cheap and does nothing: no heavy imports, no output, no patching."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, sys, time
before_hook = sys.excepthook
t = time.perf_counter()
import neuronatlas
elapsed = time.perf_counter() - t
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'duckdb', 'zarr',
               'pyarrow', 'pandas', 'fastapi', 'typer', 'rich'})
print(json.dumps({'heavy': heavy, 'elapsed': elapsed, 'hook': sys.excepthook is before_hook}))
"""


def test_import_is_light_and_silent():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    out = proc.stdout.strip().splitlines()
    assert len(out) == 1, f"importing printed something: {proc.stdout!r}"
    assert proc.stderr == ""
    got = json.loads(out[0])
    assert got["heavy"] == []
    assert got["hook"] is True
    assert 0 <= got["elapsed"] < 0.5


def test_public_names_resolve_lazily():
    import neuronatlas

    assert callable(neuronatlas.build_atlas) and callable(neuronatlas.open_atlas)
    assert neuronatlas.Recorder.__name__ == "Recorder"
    assert set(neuronatlas.__all__) >= {"build_atlas", "open_atlas", "Recorder", "resolve_sites"}
    try:
        neuronatlas.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("unknown attribute did not raise")


def test_the_viewer_with_every_analysis_page_needs_no_torch():
    # analysis packages register their pages at viewer start; their public names load lazily
    code = (
        "import sys, json; import neuronatlas.viewer as v; "
        "print(json.dumps({'torch': 'torch' in sys.modules, 'sklearn': 'sklearn' in sys.modules, "
        "'pages': [p.path for p in v.registry.pages]}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(proc.stdout)
    assert got["torch"] is False and got["sklearn"] is False
    assert {"/heads/scores", "/probes", "/steer", "/compare", "/encoding"} <= set(got["pages"])
