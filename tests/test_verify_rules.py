"""Verification rules with known outcomes: box overlap between named objects, dispersed object depth."""

from __future__ import annotations

import json

import numpy as np

from conftest import demo_dict, read_table, write_spec
from forge.build import run_build
from forge.spec.load import load_spec
from scene_data import make_dataset, use_annotations

QUIET = {"echo": lambda _: None}


def _clean_target(coco: dict) -> dict:
    """An annotation that passes every other rule: label unique in its image, well inside it, not tiny."""
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        same = [a for a in coco["annotations"] if a["image_id"] == ann["image_id"] and a["category_id"] == ann["category_id"]]
        if len(same) == 1 and x > 2 and y > 2 and x + 1.2 * w < 318 and y + h < 238 and w * h > 400:
            return ann
    raise AssertionError("no clean target in the dataset")


def _depth_only(spec: dict) -> dict:
    spec["families"] = spec["families"][:1]
    return spec


def test_max_iou_drops_pairs_of_overlapping_boxes(tmp_path):
    make_dataset(tmp_path / "data", "npy_m", count=12, clutter=False)
    coco = json.loads((tmp_path / "data" / "instances.json").read_text())
    target = _clean_target(coco)
    x, y, w, h = target["bbox"]
    coco["categories"].append({"id": 999, "name": "white lamp"})
    coco["annotations"].append({"id": 99_999, "image_id": target["image_id"], "category_id": 999,
                                "bbox": [x + w * 0.1, y, w, h]})  # IoU with the target ~0.82
    (tmp_path / "data" / "instances.json").write_text(json.dumps(coco))
    spec = use_annotations(_depth_only(demo_dict()), "npy_m")
    spec["verify"]["max_iou"] = 0.5
    spec["verify"]["max_occlusion"] = None  # the lamp covers the target: this rule would drop the pair first
    spec["families"][0]["min_margin"] = 0.0
    report = run_build(load_spec(write_spec(tmp_path, spec)), tmp_path / "db", **QUIET)
    assert report.funnel["depth_order"]["max_iou"] == 1
    target_label = next(c["name"] for c in coco["categories"] if c["id"] == target["category_id"])
    rows = read_table(tmp_path / "db").to_pylist()
    assert any("white lamp" in {o["label"] for o in r["objects"]} for r in rows)  # the lamp is asked with others
    assert not any({o["label"] for o in r["objects"]} == {"white lamp", target_label} for r in rows)


def test_dispersed_depth_drops_the_object(tmp_path):
    scenes = make_dataset(tmp_path / "data", "npy_m", count=12, clutter=False)
    coco = json.loads((tmp_path / "data" / "instances.json").read_text())
    target = _clean_target(coco)
    file = next(i["file_name"] for i in coco["images"] if i["id"] == target["image_id"])
    depth_path = tmp_path / "data" / "depth" / file.replace(".png", ".npy")
    depth = np.load(depth_path)
    x, y, w, h = (int(v) for v in target["bbox"])
    depth[y + h // 4: y + 3 * h // 4, x + w // 2: x + 3 * w // 4] = 25.0  # half the centre: something far behind
    np.save(depth_path, depth)
    spec = use_annotations(_depth_only(demo_dict()), "npy_m")
    spec["verify"]["max_depth_spread"] = 0.2
    report = run_build(load_spec(write_spec(tmp_path, spec)), tmp_path / "db", **QUIET)
    target_label = next(c["name"] for c in coco["categories"] if c["id"] == target["category_id"])
    rows = read_table(tmp_path / "db").to_pylist()
    in_target_image = [r for r in rows if r["image_uri"].endswith(file)]
    assert report.funnel["depth_order"]["depth_spread"] >= 1
    assert not any(target_label in {o["label"] for o in r["objects"]} for r in in_target_image)
    # flat-fronted cubes have one surface in their centre: spread 0, never dropped for it
    cubes = {o.label for s in scenes.values() for o in s.objects if o.shape == "cube"}
    assert any(o["label"] in cubes for r in rows for o in r["objects"])


def test_crowd_and_depiction_rules_run_where_boxes_can_carry_those_flags(tmp_path):
    """A dataset's boxes (and records kept from them) can be crowds or depictions; a synthetic scene's or a
    detector's cannot, so their funnels list no such lines."""
    from forge.judge.objects import object_rules

    make_dataset(tmp_path / "data", "npy_m", count=2, clutter=False)
    annotated = load_spec(write_spec(tmp_path, use_annotations(demo_dict(), "npy_m"), "annotated.yaml"))
    synthetic = load_spec(write_spec(tmp_path, demo_dict(), "synthetic.yaml"))
    assert [name for name, _ in object_rules(annotated.spec)][:2] == ["crowd", "depiction"]
    assert not {"crowd", "depiction"} & {name for name, _ in object_rules(synthetic.spec)}
