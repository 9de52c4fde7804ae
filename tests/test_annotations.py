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
    assert report.images == 80 and not report.images_failed
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
    [(reason, count)] = report.images_failed.items()
    assert count == 1 and "scene_005.npy" in reason
    rows = read_table(tmp_path / "db").to_pylist()
    assert rows and not any(r["image_uri"].endswith("scene_005.png") for r in rows)


def test_malformed_instances_json_is_one_line_error(tmp_path):
    make_dataset(tmp_path / "data", "npy_m")
    coco = json.loads((tmp_path / "data" / "instances.json").read_text())
    coco["annotations"][2]["bbox"] = [1, 2, 3]
    (tmp_path / "data" / "instances.json").write_text(json.dumps(coco))
    spec = write_spec(tmp_path, annotations_spec("npy_m"))
    with pytest.raises(ForgeError, match=r"annotations\[2\]\.bbox: expected \[x, y, width, height\]"):
        run_build(load_spec(spec), tmp_path / "db", echo=lambda _: None)
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(tmp_path / "db2")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "annotations[2].bbox" in result.stderr
    assert not (tmp_path / "db2").exists()
