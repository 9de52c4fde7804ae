"""Fidelity: how often kept answers are wrong, and how far answers in metres are off, per depth estimator
and family; prints two tables.

On occluded synthetic scenes seen by varied cameras (field of view 35-108 degrees, 1-2 m up, pitched down
5-25 degrees, rolled), written as a COCO + depth set with each image's K and masks, or on any COCO +
depth folder given with --truth, the same spec (every family of specs/families) is calibrated three
times, once per depth estimator (`objects.depth_from`): the whole box (as peers do), the
occlusion-aware box, and the mask. Gravity comes from a floor fit on the depth.

Comparative families: the error % of kept answers at the family's min_margin, and the answers kept as
a % of those exact perception keeps. Families answering in metres (synthetic truth only): the spec is
built once per estimator and every answer is compared with the 3D scene: the median and 90th percentile
of the relative error, the answers kept, and the share of the unambiguous candidates asked (objects
named once, whole and unhidden, true value at least min_margin); beside them the same figures for the
method forge used before lifting (a fixed 60 degree camera, objects as points at their box centres,
sizes from the box at the front depth), computed from the true boxes and the true front depth, so only
the camera and the point model are wrong.

Usage: python bench/fidelity.py [--scenes 400] [--truth DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from forge.build import run_build  # noqa: E402
from forge.calibrate import TruthSet, calibrate  # noqa: E402
from forge.spec.load import load_spec  # noqa: E402
from scene_data import make_dataset  # noqa: E402
from truth import METRIC_FAMILIES, metric_truth  # noqa: E402

FAMILY_FILES = ("depth_order", "layout", "depth_extreme", "counting", "perspective", "metric")
ESTIMATORS = {"box": "whole box (peers)", "box_visible": "occlusion-aware box", "auto": "mask"}
FIXED_FOV_DEG = 60.0


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


def _usable(scene) -> list:
    """The objects an unambiguous question may name: named once, whole in the picture, nothing in front."""
    height, width = scene.depth.shape
    labels = [o.label for o in scene.objects]
    return [o for o in scene.objects if labels.count(o.label) == 1 and o.front_visible > 0.99
            and min(o.box_px[:2]) > 0 and o.box_px[2] < width and o.box_px[3] < height]


def unambiguous(scenes: dict, min_margins: dict[str, float]) -> dict[str, set]:
    """Per metric family, the (file, labels) candidates an exact perception would be right to ask."""
    out: dict[str, set] = {family: set() for family in METRIC_FAMILIES}
    for name, scene in scenes.items():
        usable = _usable(scene)
        for o in usable:
            if min(o.width, o.height) >= min_margins["size"]:
                out["size"].add((name, frozenset([o.label])))
        for i, a in enumerate(usable):
            for b in usable[i + 1:]:
                for family in METRIC_FAMILIES[:3]:
                    if metric_truth(family, "", [a, b]) >= min_margins[family]:
                        out[family].add((name, frozenset([a.label, b.label])))
    return out


def built_errors(spec: Path, db: Path, scenes: dict) -> dict[str, tuple[list[float], set]]:
    """Per metric family, the relative error of every answer the spec's build keeps against the 3D scene,
    and the candidates it asked."""
    run_build(load_spec(spec), db, echo=lambda _: None)
    import lancedb

    out: dict[str, tuple[list[float], set]] = {family: ([], set()) for family in METRIC_FAMILIES}
    for row in lancedb.connect(str(db)).open_table("qa").to_arrow().to_pylist():
        if row["family"] not in out:
            continue
        name = Path(row["image_uri"]).name
        by_label = {o.label: o for o in scenes[name].objects}
        objects = [by_label[o["label"]] for o in row["objects"]]
        value = float(row["answer"].split()[0])
        true = metric_truth(row["family"], row["question"], objects)
        out[row["family"]][0].append(abs(value - true) / true)
        out[row["family"]][1].add((name, frozenset(o.label for o in objects)))
    return out


def fixed_camera_errors(scenes: dict, min_margins: dict[str, float]) -> dict[str, list[float]]:
    """Relative errors of the box-centre method with a fixed 60 degree camera, on the true boxes and the
    true front depth of every unhidden, whole, uniquely named object (pair), per metric family."""
    errors: dict[str, list[float]] = {family: [] for family in METRIC_FAMILIES}
    scale = 2 * math.tan(math.radians(FIXED_FOV_DEG) / 2)  # metres across the image per metre of depth
    for scene in scenes.values():
        height, width = scene.depth.shape
        usable = _usable(scene)
        points = {}
        for o in usable:
            x1, y1, x2, y2 = o.box_px
            front = float(np.percentile(scene.depth[scene.mask(scene.objects.index(o))], 10))
            centre = np.array([((x1 + x2) / 2 / width - 0.5) * front * scale,
                               ((y1 + y2) / 2 / height - 0.5) * front * scale * height / width, front])
            points[o.label] = (centre, (x2 - x1) / width * front * scale, (y2 - y1) / width * front * scale)
            for word, value in (("wide", points[o.label][1]), ("tall", points[o.label][2])):
                true = metric_truth("size", word, [o])
                if true >= min_margins["size"]:
                    errors["size"].append(abs(value - true) / true)
        for i, a in enumerate(usable):
            for b in usable[i + 1:]:
                (ca, _, _), (cb, _, _) = points[a.label], points[b.label]
                estimates = {"distance": float(np.linalg.norm(ca - cb)), "horizontal_distance": math.hypot(*(ca - cb)[::2]),
                             "vertical_distance": abs(ca[1] - cb[1])}
                for family, value in estimates.items():
                    true = metric_truth(family, "", [a, b])
                    if true >= min_margins[family]:
                        errors[family].append(abs(value - true) / true)
    return errors


def _figures(errors: np.ndarray | list[float]) -> str:
    errors = np.asarray(errors)
    if not errors.size:
        return "-"
    return f"{np.median(errors):.1%} / {np.percentile(errors, 90):.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=400, help="cluttered synthetic scenes to write as the truth set")
    parser.add_argument("--truth", type=Path, default=None, help="a COCO + depth folder (instances.json, images/, depth/)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    scenes: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        truth = args.truth.resolve() if args.truth else folder / "truth"
        if args.truth is None:
            start = time.perf_counter()
            scenes = make_dataset(truth, "png16_mm", masks=True, count=args.scenes, objects=(4, 9), camera="varied",
                                  intrinsics="K")
            print(f"truth: {args.scenes} cluttered synthetic scenes with masks, varied cameras given as K "
                  f"({time.perf_counter() - start:.1f} s to write)")
        else:
            print(f"truth: {truth}")
        results, built = {}, {}
        margins = {f.name: f.min_margin for f in load_spec(spec_for(truth, "auto", folder)).spec.families}
        for depth_from in ESTIMATORS:
            start = time.perf_counter()
            spec = spec_for(truth, depth_from, folder)
            results[depth_from] = calibrate(load_spec(spec), TruthSet.open(truth), folder / "db")
            if scenes:
                built[depth_from] = built_errors(spec, folder / f"db_{depth_from}", scenes)
            print(f"calibrated (and built) depth_from={depth_from} in {time.perf_counter() - start:.1f} s")
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
    if scenes:
        asked_right = unambiguous(scenes, margins)
        fixed = fixed_camera_errors(scenes, margins)
        print()
        print("answers in metres against the 3D scene: median / 90th percentile relative error at the family's min_margin "
              "(metres); in brackets: answers kept, % of the unambiguous candidates asked")
        print(f"| family | min_margin | {' | '.join(ESTIMATORS.values())} | fixed {FIXED_FOV_DEG:g} deg camera, box centres |")
        print(f"|---|---|{'---|' * (len(ESTIMATORS) + 1)}")
        for family in METRIC_FAMILIES:
            cells = []
            for depth_from in ESTIMATORS:
                errors, asked = built[depth_from][family]
                share = len(asked & asked_right[family]) / max(len(asked_right[family]), 1)
                cells.append(f"{_figures(errors)} ({len(errors)}, {share:.0%})")
            cells.append(f"{_figures(fixed[family])} ({len(fixed[family])})")
            print(f"| {family} | {margins[family]:g} | {' | '.join(cells)} |")
    skipped = results["auto"].skipped
    if skipped:
        print("not calibrated: " + "; ".join(f"{family} ({why})" for family, why in skipped.items()))


if __name__ == "__main__":
    main()
