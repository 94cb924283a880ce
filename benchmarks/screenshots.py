"""Take the documentation screenshots of the viewer: ``overview.png`` and ``unit.png``.

    python benchmarks/screenshots.py ATLAS OUTDIR [--unit SITE:UNIT]

Serves ATLAS on a free local port, opens it in Chromium (Debian's ``/usr/bin/chromium`` when
present, else Playwright's own) and writes the two PNGs into OUTDIR. Without ``--unit`` it
picks a characteristic unit: in the middle site, the most kurtotic unit that is active on 2-30%
of tokens (a selective unit with clear exemplars).

``python benchmarks/screenshots.py --synthetic docs/img`` uses a synthetic atlas instead.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from neuronatlas.viewer import serve_in_thread, write_synthetic_atlas

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip


def pick_unit(base: str) -> tuple[str, int]:
    sites = json.load(urllib.request.urlopen(base + "/api/sites"))
    site = sites[len(sites) // 2]["name"]
    skip = [("label", f"!label_{name}") for name in ("massive", "positional", "dead")]
    for extra in (
        [("range", "frac_active:0.02:0.3"), *skip],
        [("range", "frac_active:0.02:0.3")],
        [],
    ):
        params = [
            ("site", site),
            ("sort", "kurtosis"),
            ("order", "desc"),
            ("per_page", "1"),
            *extra,
        ]
        try:
            rows = json.load(
                urllib.request.urlopen(f"{base}/api/units?{urllib.parse.urlencode(params)}")
            )["rows"]
        except urllib.error.HTTPError:  # e.g. an atlas without these labels
            continue
        if rows:
            return rows[0]["site"], int(rows[0]["unit"])
    return site, 0


def take(atlas: Path, out: Path, unit: str | None = None, width: int = 1360) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with serve_in_thread(atlas) as base, sync_playwright() as pw:
        launch = {"headless": True, "args": ARGS}
        if CHROMIUM.exists():
            launch["executable_path"] = str(CHROMIUM)
        browser = pw.chromium.launch(**launch)
        page = browser.new_page(viewport={"width": width, "height": 1120}, device_scale_factor=2)
        page.goto(base + "/")
        page.screenshot(
            path=str(out / "overview.png"),
            full_page=False,
            clip={"x": 0, "y": 0, "width": width, "height": 1060},
        )
        if unit:
            site, _, number = unit.rpartition(":")
            chosen = (site, int(number))
        else:
            chosen = pick_unit(base)
        page.goto(f"{base}/unit/{urllib.parse.quote(chosen[0], safe='')}/{chosen[1]}")
        page.hover(".ctx > .focus")
        page.screenshot(
            path=str(out / "unit.png"),
            full_page=False,
            clip={"x": 0, "y": 0, "width": width, "height": 1120},
        )
        browser.close()
    return [out / "overview.png", out / "unit.png"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="ATLAS OUTDIR",
        help="atlas directory and output folder",
    )
    parser.add_argument("--unit", help="SITE:UNIT to show (default: picked automatically)")
    parser.add_argument("--synthetic", action="store_true", help="use a synthetic atlas")
    args = parser.parse_args()
    if len(args.paths) != (1 if args.synthetic else 2):
        parser.error("give ATLAS OUTDIR, or --synthetic OUTDIR")
    if args.synthetic:
        atlas = write_synthetic_atlas(
            Path(tempfile.mkdtemp()) / "atlas",
            n_layers=6,
            n_units=384,
            n_docs=160,
            doc_len=96,
            top_k=20,
            context=10,
            seed=3,
        )
    else:
        atlas = args.paths[0]
    for path in take(atlas, args.paths[-1], args.unit):
        print(path)


if __name__ == "__main__":
    main()
