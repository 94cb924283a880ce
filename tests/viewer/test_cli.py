"""``neuronatlas view`` and ``neuronatlas export`` from the command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neuronatlas.cli._app import app, load_verbs

load_verbs(["_view"])
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def test_export_verb(atlas_path: Path, tmp_path: Path):
    out = tmp_path / "site"
    result = runner.invoke(
        app,
        [
            "export",
            str(atlas_path),
            "--html",
            str(out),
            "--sites",
            "encoder.layer.0",
            "--exemplars",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    page = (out / "unit" / "1-encoder.layer.0" / "7.html").read_text()
    assert page.count('<li class="ex"') == 3
    assert re.search(r"Wrote 26 pages \([\d.]+ MB\)", result.output)
    assert (out / "index.html").exists() and len(list((out / "unit").rglob("*.html"))) == 24
    again = runner.invoke(app, ["export", str(atlas_path), "--html", str(out)])
    assert again.exit_code == 2 and "previous export" in again.output and "--force" in again.output
    forced = runner.invoke(
        app,
        ["export", str(atlas_path), "--html", str(out), "--force", "--sites", "encoder.layer.1"],
    )
    assert forced.exit_code == 0, forced.output


def test_verbs_report_errors_in_one_line(tmp_path: Path):
    result = runner.invoke(
        app, ["export", str(tmp_path / "nothing"), "--html", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "error:" in result.output and "No atlas" in result.output
    result = runner.invoke(app, ["view", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "No atlas" in result.output


def test_view_verb_serves_and_prints_the_url(atlas_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    code = "import sys; from neuronatlas.cli import main; main(sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "view", str(atlas_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        line = ""
        while "http://" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"neuronatlas view exited with {proc.returncode}")
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with urllib.request.urlopen(url + "units") as r:
            assert r.status == 200 and b"Units" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
