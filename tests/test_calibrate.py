"""`forge calibrate`: error of kept answers against ground truth, per family and min_margin.

The truth is a COCO + depth set written from cluttered synthetic scenes (masks included), so every
answer can also be checked independently against the renderer's 3D layout.
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from conftest import DEMO_SPEC, REPO, read_table, write_spec
from forge.calibrate import match
from forge.cli import main
from scene_data import make_dataset, use_annotations

SCENES = 120


@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("calibrate")
    scenes = make_dataset(root / "truth", "png16_mm", masks=True, count=SCENES, intrinsics="K")
    return root, scenes


def _families(*names: str) -> list[dict]:
    out = []
    for name in names:
        out += yaml.safe_load((REPO / "specs" / "families" / f"{name}.yaml").read_text())["families"]
    return out


def _spec(root: Path, depth_from: str, name: str, families: list[dict] | None = None, instances: str | None = None) -> Path:
    spec = use_annotations(yaml.safe_load(DEMO_SPEC.read_text()), "png16_mm", folder="truth")
    spec["objects"]["depth_from"] = depth_from
    if families is not None:
        spec["families"] = families
    if instances is not None:
        spec["source"]["instances"] = instances
    return write_spec(root, spec, name=name)


def _calibrate(root: Path, spec: Path, *args: str) -> tuple[str, dict]:
    out = root / f"out_{spec.stem}"
    result = CliRunner().invoke(main, ["calibrate", str(spec), "--truth", str(root / "truth"), "--out", str(out),
                                       "--db", str(root / "db"), *args])
    assert result.exit_code == 0, result.output
    curves: dict = {}
    with (out / "calibration.csv").open() as file:
        for row in csv.DictReader(file):
            if row["wrong"]:  # a comparative family: answers right or wrong
                curves.setdefault(row["family"], {})[float(row["min_margin"])] = (int(row["kept"]), int(row["wrong"]))
            else:  # a family answering in metres: the median and 90th percentile relative error of what it keeps
                errors = tuple(float(row[k]) if row[k] else None for k in ("median_error", "p90_error"))
                curves.setdefault(row["family"], {})[float(row["min_margin"])] = (int(row["kept"]), errors)
    return result.stdout, curves


def _proposed(output: str) -> dict[str, float]:
    block = output[output.index("families:"):]
    return {f["name"]: f["min_margin"] for f in yaml.safe_load(block)["families"]}


def test_perception_equal_to_the_truth_is_never_wrong(truth):
    root, _ = truth
    every = _families("depth_order", "layout", "depth_extreme", "counting", "perspective", "grounding", "metric")
    output, curves = _calibrate(root, _spec(root, "auto", "masks.yaml", every))
    metric = {"distance", "horizontal_distance", "vertical_distance", "size"}
    assert set(curves) == {"depth_order", "left_right", "above_below", "depth_extreme", "counting", "perspective_side",
                           "perspective_view", "grounding", "wider", "taller"} | metric
    for family, curve in curves.items():
        assert curve[0.0][0] > 5, family  # candidates are checked
        if family in metric:  # the truth's own numbers: no error at all
            assert all(errors == (0.0, 0.0) for kept, errors in curve.values() if kept), family
        else:
            assert all(wrong == 0 for _, wrong in curve.values()), family
    assert "distance: " in output and "answers in metres pass every rule but min_margin (metres)" in output
    assert "100% of the objects they name match a true object" in output
    assert set(_proposed(output).values()) == {0.0}


def test_box_depth_is_wrong_under_occlusion_and_the_proposed_margin_holds_in_a_build(truth):
    """Depth from the whole box takes the occluder's depth: wrong answers at small margins, fewer at
    large ones. Pasting the proposed margin into the spec must give a build whose depth answers are
    at most 1% wrong by the renderer's own 3D layout, and keep a fair share of them."""
    root, scenes = truth
    spec_path = _spec(root, "box", "box.yaml")
    output, curves = _calibrate(root, spec_path)
    depth = curves["depth_order"]
    kept_all, wrong_all = depth[0.0]
    assert wrong_all >= 3 and wrong_all / kept_all > 0.01
    thresholds = sorted(depth)
    assert all(depth[a][0] >= depth[b][0] for a, b in zip(thresholds, thresholds[1:]))  # kept falls as the margin rises
    proposed = _proposed(output)["depth_order"]
    kept, wrong = depth[proposed]
    assert 0 < proposed and wrong <= 0.01 * kept and kept >= 30
    assert f"min_margin: {proposed:.2f}" in output

    spec = yaml.safe_load(spec_path.read_text())
    for family in spec["families"]:
        family["balance"] = {"by": "none"}
        if family["name"] == "depth_order":
            family["min_margin"] = proposed
    result = CliRunner().invoke(main, ["build", str(write_spec(root, spec, "box_calibrated.yaml")), "--db", str(root / "built")])
    assert result.exit_code == 0, result.output
    rows = [r for r in read_table(root / "built").to_pylist() if r["family"] == "depth_order"]
    wrong_rows = 0
    for row in rows:
        scene = scenes[Path(row["image_uri"]).name]
        by_label = {o.label: o for o in scene.objects}
        a, b = (by_label[o["label"]] for o in row["objects"])
        closer, farther = (a, b) if a.z_front < b.z_front else (b, a)
        expected = closer.label if row["template_id"].startswith("depth_order/0/") else farther.label
        wrong_rows += row["answer"] != expected
    assert len(rows) == kept and wrong_rows <= 0.01 * len(rows)


def test_missed_detections_make_counts_wrong(truth, tmp_path):
    """A detector that misses objects: the spec's annotations lack one object in every third image."""
    root, _ = truth
    coco = json.loads((root / "truth" / "instances.json").read_text())
    dropped, seen = set(), set()
    for ann in coco["annotations"]:
        if ann["image_id"] % 3 == 0 and ann["image_id"] not in seen:
            seen.add(ann["image_id"])
            dropped.add(ann["id"])
    coco["annotations"] = [a for a in coco["annotations"] if a["id"] not in dropped]
    (root / "missing.json").write_text(json.dumps(coco))
    _, curves = _calibrate(root, _spec(root, "auto", "missing.yaml", _families("counting"), instances="missing.json"))
    kept, wrong = curves["counting"][0.0]
    assert 0 < wrong < kept


def test_models_with_true_boxes_measure_depth_alone(truth, tmp_path):
    from tiny_models import save_tiny_depth, save_tiny_owlvit
    from helpers import models_spec

    root, _ = truth
    depth, owl = save_tiny_depth(tmp_path / "depth"), save_tiny_owlvit(tmp_path / "owl")
    spec = models_spec(str(depth), str(owl))
    spec["perception"]["grounding"]["vocabulary"] = sorted({a["name"] for a in json.loads(
        (root / "truth" / "instances.json").read_text())["categories"]})
    spec["source"]["path"] = str(root / "truth" / "images")  # any photos: calibration runs on the truth's own
    spec_path = write_spec(tmp_path, spec)
    args = ["calibrate", str(spec_path), "--truth", str(root / "truth"), "--db", str(tmp_path / "db"), "--out", str(tmp_path / "out")]
    boxed = CliRunner().invoke(main, [*args, "--boxes", "truth"])
    assert boxed.exit_code == 0, boxed.output
    assert "100% of the objects they name match a true object" in boxed.stdout
    [line] = [l for l in boxed.stdout.splitlines() if l.strip().startswith("0.00 ")]
    kept, wrong = int(line.split()[1]), int(line.split()[3])
    assert kept > 50 and 0.15 < wrong / kept < 0.85  # a random depth model: about a coin toss
    assert "cannot be trusted" in boxed.stdout
    with Image.open(tmp_path / "out" / "calibration.png") as plot:
        assert plot.size == (560, 300)

    found = CliRunner().invoke(main, args)  # the tiny detector's own boxes: few match a true object
    assert found.exit_code == 0, found.output
    share = int(found.stdout.split("% of the objects they name")[0].split()[-1])
    assert share < 50


@pytest.mark.parametrize("case, message", [
    ("synthetic", "perception is synthetic: its scenes are exact"),
    ("no_truth", "no instances.json there"),
    ("elsewhere", "none of its images is in the truth set"),
    ("boxes", "--boxes truth: only for perception: models"),
])
def test_calibrate_refuses_with_one_line(truth, tmp_path, case, message):
    root, _ = truth
    spec = _spec(root, "auto", "refuse.yaml")
    truth_dir = root / "truth"
    args = []
    if case == "synthetic":
        spec = DEMO_SPEC
    elif case == "no_truth":
        truth_dir = tmp_path
    elif case == "elsewhere":
        make_dataset(tmp_path / "other", "png16_mm", count=3, objects=(2, 3))
        for image in (tmp_path / "other" / "images").iterdir():
            Image.open(image).convert("L").convert("RGB").save(image)  # other pictures, same names
        truth_dir = tmp_path / "other"
    elif case == "boxes":
        args = ["--boxes", "truth"]
    result = CliRunner().invoke(main, ["calibrate", str(spec), "--truth", str(truth_dir), "--db", str(tmp_path / "db"),
                                       "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert result.stderr.strip().count("\n") == 0


def test_matching_is_by_label_and_overlap_each_true_object_once():
    def obj(label, x1, y1, x2, y2):
        return {"label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2}

    true = [obj("cup", 0.1, 0.1, 0.3, 0.3), obj("cup", 0.5, 0.5, 0.7, 0.7), obj("dog", 0.1, 0.1, 0.3, 0.3)]
    perceived = [obj("cup", 0.12, 0.1, 0.3, 0.31),  # the first cup
                 obj("cup", 0.11, 0.1, 0.3, 0.3),  # the first cup again: taken by the better overlap
                 obj("dog", 0.5, 0.5, 0.7, 0.7),  # a dog where a cup is: no match
                 obj("cup", 0.52, 0.52, 0.72, 0.72)]  # the second cup, IoU 0.68
    assert match(perceived, true) == [None, 0, None, 1]
    assert match(perceived, true, min_iou=0.7) == [None, 0, None, None]
    assert match(copy.deepcopy(perceived), []) == [None] * 4
