"""Time `forge build specs/demo.yaml` end to end and per stage; prints the figures.

Usage: python bench/demo_build.py [--images N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import yaml

from forge.build import run_build
from forge.spec.load import load_spec

DEMO = Path(__file__).resolve().parent.parent / "specs" / "demo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=None, help="override source.images (default: the demo's 200)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = DEMO
        if args.images is not None:
            spec = yaml.safe_load(DEMO.read_text())
            spec["source"]["images"] = args.images
            spec_path = Path(tmp) / "demo.yaml"
            spec_path.write_text(yaml.safe_dump(spec))
        loaded = load_spec(spec_path)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
        for run in range(args.repeat):
            start = time.perf_counter()
            report = run_build(loaded, Path(tmp) / f"db{run}", echo=lambda _: None)
            seconds = time.perf_counter() - start
            print(f"run {run}: {report.images} images, {report.objects} objects, {report.qa_rows} QA rows "
                  f"in {seconds:.2f} s ({report.images / seconds:.0f} images/s, {report.qa_rows / seconds:.0f} QA/s)")


if __name__ == "__main__":
    main()
