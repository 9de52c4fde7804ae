"""Fidelity: how often kept answers are wrong, per depth estimator and family; prints a table.

On occluded synthetic scenes written as a COCO + depth set (masks included), or on any COCO +
depth folder given with --truth, the same spec (every comparative family of specs/families) is
calibrated three times, once per depth estimator (`objects.depth_from`): the whole box (as peers
do), the occlusion-aware box, and the mask. For each family at its shipped min_margin it reports
the error % of kept answers against the truth, and the answers kept as a % of those that exact
perception keeps (the unambiguous ones, by the truth's own margins and rules).

Usage: python bench/fidelity.py [--scenes 400] [--truth DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from forge.calibrate import TruthSet, calibrate  # noqa: E402
from forge.spec.load import load_spec  # noqa: E402
from scene_data import make_dataset  # noqa: E402

FAMILY_FILES = ("depth_order", "layout", "depth_extreme", "counting", "perspective", "metric")
ESTIMATORS = {"box": "whole box (peers)", "box_visible": "occlusion-aware box", "auto": "mask"}


def spec_for(truth: Path, depth_from: str, folder: Path) -> Path:
    spec = yaml.safe_load((REPO / "specs" / "demo.yaml").read_text())
    spec.update(name=f"fidelity_{depth_from}", perception="annotations", families=[])
    spec["source"] = {"kind": "annotations", "instances": str(truth / "instances.json"), "images": str(truth / "images"),
                      "depth": str(truth / "depth"), "depth_format": TruthSet.open(truth).source.depth_format}
    spec["objects"]["depth_from"] = depth_from
    for name in FAMILY_FILES:
        spec["families"] += yaml.safe_load((REPO / "specs" / "families" / f"{name}.yaml").read_text())["families"]
    path = folder / f"fidelity_{depth_from}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=400, help="cluttered synthetic scenes to write as the truth set")
    parser.add_argument("--truth", type=Path, default=None, help="a COCO + depth folder (instances.json, images/, depth/)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        truth = args.truth.resolve() if args.truth else folder / "truth"
        if args.truth is None:
            start = time.perf_counter()
            make_dataset(truth, "png16_mm", masks=True, count=args.scenes, objects=(4, 9))
            print(f"truth: {args.scenes} cluttered synthetic scenes with masks ({time.perf_counter() - start:.1f} s to write)")
        else:
            print(f"truth: {truth}")
        results = {}
        for depth_from in ESTIMATORS:
            start = time.perf_counter()
            loaded = load_spec(spec_for(truth, depth_from, folder))
            results[depth_from] = calibrate(loaded, TruthSet.open(truth), folder / "db")
            print(f"calibrated depth_from={depth_from} in {time.perf_counter() - start:.1f} s")
    exact = {c.family: c for c in results["auto"].curves}
    print()
    print("error % of kept answers at the family's min_margin; in brackets: answers kept, % of what mask depth keeps")
    print(f"| family | min_margin | {' | '.join(ESTIMATORS.values())} |")
    print(f"|---|---|{'---|' * len(ESTIMATORS)}")
    for family, reference in exact.items():
        cells = []
        base, _ = reference.at(reference.current)
        for depth_from in ESTIMATORS:
            curve = next((c for c in results[depth_from].curves if c.family == family), None)
            if curve is None:
                cells.append("- (no candidates)")
                continue
            kept, wrong = curve.at(curve.current)
            error = f"{wrong / kept:.1%}" if kept else "-"
            cells.append(f"{error} ({kept}, {(kept - wrong) / base:.0%})" if base else f"{error} ({kept})")
        print(f"| {family} | {reference.current:g} | {' | '.join(cells)} |")
    skipped = results["auto"].skipped
    if skipped:
        print("not calibrated: " + "; ".join(f"{family} ({why})" for family, why in skipped.items()))


if __name__ == "__main__":
    main()
