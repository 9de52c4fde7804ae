"""`perception: annotations`: COCO boxes (and masks) + depth maps of cluttered scenes in, answers
checked against the scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import demo_dict, read_table, write_spec
from scene_data import SCENES, make_dataset, use_annotations
from forge.build import run_build
from forge.cli import main
from forge.errors import ForgeError
from forge.spec.load import load_spec

def annotations_spec(depth_format: str) -> dict:
    return use_annotations(demo_dict(), depth_format)


@pytest.mark.parametrize("depth_format, masks", [("png16_mm", False), ("npy_m", False), ("npy_m", True)])
def test_annotation_build_matches_ground_truth(tmp_path, depth_format, masks):
    scenes = make_dataset(tmp_path / "data", depth_format, count=80, masks=masks, objects=(4, 9))
    loaded = load_spec(write_spec(tmp_path, annotations_spec(depth_format)))
    report = run_build(loaded, tmp_path / "db", echo=lambda _: None)
    rows = read_table(tmp_path / "db").to_pylist()
    assert report.images == 80 and not report.skipped.counts
    assert len(rows) > 150
    margins = {f.name: f.min_margin for f in loaded.spec.families}
    for row in rows:
        scene = scenes[Path(row["image_uri"]).name]
        by_label = {o.label: o for o in scene.objects}
        a, b = (by_label[o["label"]] for o in row["objects"])
        if row["family"] == "depth_order":
            # ground truth is the annotated depth: millimetre-rounded for 16-bit PNGs
            za, zb = (np.float32(round(o.z_front * 1000) / 1000) if depth_format == "png16_mm" else np.float32(o.z_front) for o in (a, b))
            closer, farther = (a, b) if za < zb else (b, a)
            expected = closer.label if row["template_id"].startswith("depth_order/0/") else farther.label
            assert (max(za, zb) - min(za, zb)) / min(za, zb) >= margins["depth_order"] - 1e-6
        else:
            expected = "left" if a.box_px[0] + a.box_px[2] < b.box_px[0] + b.box_px[2] else "right"
        assert row["answer"] == expected, row["question"]
        assert row["perception"] == "annotations" and row["depth_kind"] == "metric"


def test_image_without_depth_map_is_skipped_with_reason(tmp_path):
    make_dataset(tmp_path / "data", "npy_m", drop_depth_for=5)
    loaded = load_spec(write_spec(tmp_path, annotations_spec("npy_m")))
    report = run_build(loaded, tmp_path / "db", echo=lambda _: None)
    assert report.images == SCENES
    [(reason, count)] = report.skipped.counts.items()
    assert count == 1 and "depth" in reason and report.skipped.examples[reason][0].endswith("scene_005.png")
    rows = read_table(tmp_path / "db").to_pylist()
    assert rows and not any(r["image_uri"].endswith("scene_005.png") for r in rows)


def test_malformed_instances_json_is_one_line_error(tmp_path):
    make_dataset(tmp_path / "data", "npy_m")
    coco = json.loads((tmp_path / "data" / "instances.json").read_text())
    coco["annotations"][2]["bbox"] = [1, 2, 3]
    (tmp_path / "data" / "instances.json").write_text(json.dumps(coco))
    spec = write_spec(tmp_path, annotations_spec("npy_m"))
    with pytest.raises(ForgeError, match=r"annotations\[2\]\.bbox: \[1, 2, 3\]: expected \[x, y, width, height\]"):
        run_build(load_spec(spec), tmp_path / "db", echo=lambda _: None)
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(tmp_path / "db2")])
    assert result.exit_code == 2  # one error line (after the reading bar's label), and nothing written
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "annotations[2].bbox" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "db2").exists() and not list(tmp_path.glob(".db2.*"))


def test_broken_images_and_mismatched_maps_are_skipped_not_asked_about(tmp_path):
    """The annotations source decodes what it reads: a broken picture, a picture of another size than
    the instances file says, or a depth map of another shape is one row in `errors` and no QA row."""
    from PIL import Image

    make_dataset(tmp_path / "data", "npy_m", count=30)
    images, depth = tmp_path / "data" / "images", tmp_path / "data" / "depth"
    (images / "scene_000.png").write_bytes(b"")
    (images / "scene_001.png").write_bytes((images / "scene_001.png").read_bytes()[:700])
    (images / "scene_002.png").write_text("not a picture\n" * 50)
    Image.open(images / "scene_003.png").resize((160, 240)).save(images / "scene_003.png")  # not 320x240
    np.save(depth / "scene_004.npy", np.ones((100, 100), np.float32))  # not the image's shape
    Image.open(images / "scene_005.png").resize((640, 480)).save(images / "scene_005.png")  # same shape, 2x: fine
    np.save(depth / "scene_006.npy", np.load(depth / "scene_006.npy")[::4, ::4])  # 80x60 map of 320x240: fine
    loaded = load_spec(write_spec(tmp_path, annotations_spec("npy_m")))
    report = run_build(loaded, tmp_path / "db", echo=lambda _: None)
    assert sum(report.skipped.counts.values()) == 5, report.skipped.counts
    assert sum(n for reason, n in report.skipped.counts.items() if reason.startswith("cannot read image")) == 3
    errors = {Path(r["image_uri"]).name: r["reason"] for r in read_table(tmp_path / "db", "errors", "image_uri").to_pylist()}
    reasons = " | ".join(errors.values())  # the summary groups them by kind; the table keeps each image's own
    assert "object at 0x" not in reasons  # no buffer addresses: the errors rows are the same on every run
    assert "image is 160x240 (after EXIF orientation) but the instances file says 320x240" in errors["scene_003.png"]
    assert "depth map scene_004.npy is 100x100, another shape than its image (320x240)" in errors["scene_004.png"]
    asked = {Path(r["image_uri"]).name for r in read_table(tmp_path / "db").to_pylist()}
    assert asked and not asked & {f"scene_00{i}.png" for i in range(5)}
    assert report.images == 30
    assert set(errors) == {f"scene_00{i}.png" for i in range(5)}


def test_every_coco_problem_is_one_line_with_its_key_path(tmp_path):
    make_dataset(tmp_path / "data", "npy_m", count=4)
    path = tmp_path / "data" / "instances.json"
    coco = json.loads(path.read_text())
    coco["images"].append(dict(coco["images"][0], file_name="scene_003.png"))  # a second picture under id 1
    coco["images"][1]["width"] = 0
    coco["images"][2]["file_name"] = "/etc/hostname"
    coco["images"][3]["file_name"] = "../outside.png"
    coco["annotations"][0]["score"] = "high"
    coco["annotations"][1]["bbox"] = [None, 1, 2, 3]
    coco["annotations"][2]["bbox"] = [1, 2, -5, 3]
    path.write_text(json.dumps(coco))
    result = CliRunner().invoke(main, ["build", str(write_spec(tmp_path, annotations_spec("npy_m"))), "--db", str(tmp_path / "db")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error")]
    expected = ["images[4].id: 1 is also images[0].id", "images[1].width: 0 must be a positive number",
                "images[2].file_name: '/etc/hostname' is outside the images folder",
                "images[3].file_name: '../outside.png' is outside the images folder",
                "annotations[0].score: 'high' must be a number from 0 to 1",
                "annotations[1].bbox: [None, 1, 2, 3]: expected [x, y, width, height]",
                "annotations[2].bbox: [1, 2, -5, 3]: expected [x, y, width, height]"]
    for problem in expected:
        assert sum(problem in line for line in lines) == 1, (problem, lines)
    assert len(lines) == len(expected) and all(line.startswith(f"error: {path}: ") for line in lines)
    assert not (tmp_path / "db").exists()
    coco["annotations"][1]["bbox"] = [float("nan"), 1, 2, 3]  # Python writes NaN; JSON has no such number
    path.write_text(json.dumps(coco))
    result = CliRunner().invoke(main, ["build", str(write_spec(tmp_path, annotations_spec("npy_m"))), "--db", str(tmp_path / "db")])
    lines = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.exit_code == 2 and len(lines) == 1 and "invalid char in json text" in lines[0] and "NaN" in lines[0]
