"""Bad cameras and missing geometry are one clear line or a named funnel rule, never a wrong metric answer:
bad K matrices and gravity in COCO, camera: [model] without a model that predicts a field of view, metric
families over relative depth, records without cameras or 3D numbers; and `forge stats` shows the mix."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from conftest import REPO, write_spec
from forge.build import run_build
from forge.cli import main
from forge.errors import ForgeError
from forge.spec.load import load_spec
from helpers import models_spec, write_photos
from scene_data import make_dataset, use_annotations
from tiny_models import save_tiny_depth, save_tiny_depth_pro, save_tiny_owlvit

METRIC = yaml.safe_load((REPO / "specs" / "families" / "metric.yaml").read_text())


def _validate(spec) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", str(spec)])
    return result.exit_code, result.output


@pytest.mark.parametrize("entry, key, says", [
    ({"K": [[1.0, 0.0], [0.0, 1.0]]}, "K", "not a 3x3 matrix"),
    ({"K": [[0.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]]}, "K", "focal lengths must be positive"),
    ({"K": [[300.0, 0.0, 160.0], [0.0, -3.0, 120.0], [0.0, 0.0, 1.0]]}, "K", "focal lengths must be positive"),
    ({"fx": 300.0, "fy": 300.0}, "fx", "without cx, cy"),
    ({"gravity": [0, 0, 0]}, "gravity", "not a direction"),
    ({"gravity": "down"}, "gravity", "must be \\[x, y, z\\]"),
    ({"pitch": 120}, "pitch", "between -90 and 90"),
    ({"camera_height": -1.5}, "camera_height", "height above the floor"),
])
def test_bad_cameras_and_gravity_in_coco_are_one_line_each(tmp_path, entry, key, says):
    make_dataset(tmp_path / "data", "npy_m", count=4, masks=True, camera="varied", intrinsics="K")
    coco = json.loads((tmp_path / "data" / "instances.json").read_text())
    coco["images"][2] = {k: v for k, v in coco["images"][2].items() if k != "K"} | entry
    (tmp_path / "data" / "instances.json").write_text(json.dumps(coco))
    spec = write_spec(tmp_path, use_annotations(METRIC, "npy_m"))
    with pytest.raises(ForgeError, match=rf"images\[2\]\.{key}: .*{says}"):
        run_build(load_spec(spec), tmp_path / "db", echo=lambda _: None)
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(tmp_path / "db")])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]  # not the reading bar's label
    assert result.exit_code == 2 and len(errors) == 1 and f"images[2].{key}" in errors[0]


def test_gravity_given_as_pitch_and_roll_is_used_as_given(tmp_path):
    make_dataset(tmp_path / "data", "npy_m", count=12, masks=True, camera="varied", intrinsics="K", gravity=True)
    spec = write_spec(tmp_path, use_annotations(METRIC, "npy_m"))
    report = run_build(load_spec(spec), tmp_path / "db", echo=lambda _: None)
    assert report.qa_rows > 0
    from conftest import read_table

    assert {r["gravity_source"] for r in read_table(tmp_path / "db").to_pylist()} == {"annotation"}


def test_metric_families_over_relative_depth_are_refused(tmp_path):
    depth, owl = save_tiny_depth(tmp_path / "depth"), save_tiny_owlvit(tmp_path / "owl")
    write_photos(tmp_path / "photos", count=2)
    spec = dict(models_spec(str(depth), str(owl)), families=METRIC["families"])
    code, output = _validate(write_spec(tmp_path, spec))
    assert code == 2 and output.count("\n") == 1
    assert "perception.depth.model" in output and "predicts relative depth, not metres" in output and "distance" in output
    annotated = use_annotations(METRIC, "npy_m")
    annotated["source"]["depth_kind"] = "relative"
    make_dataset(tmp_path / "data", "npy_m", count=2)
    code, output = _validate(write_spec(tmp_path, annotated, "relative.yaml"))
    assert code == 2 and "source.depth_kind" in output and "cannot answer in metres" in output


def test_a_camera_from_a_model_that_predicts_none_is_refused(tmp_path):
    depth, owl = save_tiny_depth(tmp_path / "depth"), save_tiny_owlvit(tmp_path / "owl")
    write_photos(tmp_path / "photos", count=2)
    spec = dict(models_spec(str(depth), str(owl)), objects={"camera": ["model"]})
    code, output = _validate(write_spec(tmp_path, spec))
    assert code == 2 and output.count("\n") == 1 and "objects.camera" in output and "predicts no field of view" in output
    spec["perception"]["depth"]["model"] = str(save_tiny_depth_pro(tmp_path / "depth_pro"))
    assert _validate(write_spec(tmp_path, spec))[0] == 0  # DepthPro predicts one
    annotated = dict(use_annotations(METRIC, "npy_m"), objects={"camera": ["model", "annotation"]})
    make_dataset(tmp_path / "data", "npy_m", count=2)
    code, output = _validate(write_spec(tmp_path, annotated, "annotated.yaml"))
    assert code == 2 and "runs no depth model" in output


def test_records_without_cameras_or_3d_columns_are_refused_for_metric_families(tmp_path):
    """A table of records made elsewhere: with cameras and lifted objects it answers (camera_source
    `records`); without either, `forge validate` says what is missing, in one line."""
    import pyarrow as pa

    from forge.perception.perceivers import perceiver_for
    from forge.perception.records import LIFTED_FIELDS
    from forge.perception.tasks import RunOptions

    synthetic = dict(METRIC, source={**METRIC["source"], "images": 30})
    perceiver = perceiver_for(load_spec(write_spec(tmp_path, synthetic, "synthetic.yaml")), 0, None, RunOptions())
    table = perceiver.records(0, perceiver.items).to_arrow().drop_columns(["camera_source"])
    objects = table.column("objects").combine_chunks()
    kept = [f.name for f in objects.type.value_type if f.name not in LIFTED_FIELDS]
    flat = pa.ListArray.from_arrays(objects.offsets, pa.StructArray.from_arrays(
        [objects.values.field(name) for name in kept], names=kept))
    pq.write_table(table, tmp_path / "full.parquet")
    pq.write_table(table.drop_columns(["fx", "fy", "cx", "cy"]), tmp_path / "no_camera.parquet")
    pq.write_table(table.set_column(table.schema.get_field_index("objects"), "objects", flat), tmp_path / "flat.parquet")

    def spec(path: str) -> dict:
        return dict(METRIC, name=path.split(".")[0], source={"kind": "records", "path": path}, perception="records")

    code, output = _validate(write_spec(tmp_path, spec("no_camera.parquet"), "a.yaml"))
    assert code == 2 and output.count("\n") == 1 and "has no camera columns (fx, fy, cx, cy)" in output
    code, output = _validate(write_spec(tmp_path, spec("flat.parquet"), "b.yaml"))
    assert code == 2 and output.count("\n") == 1 and "has no 3D object columns (x3d" in output
    report = run_build(load_spec(write_spec(tmp_path, spec("full.parquet"), "c.yaml")), tmp_path / "db", echo=lambda _: None)
    assert report.qa_rows > 0
    from conftest import read_table

    rows = read_table(tmp_path / "db").to_pylist()
    assert {r["camera_source"] for r in rows} == {"records"}
    result = CliRunner().invoke(main, ["stats", "--db", str(tmp_path / "db")])
    assert result.exit_code == 0 and "cameras of the" in result.output and "records 100.0%" in result.output
    assert "gravity of the" in result.output and "annotation 100.0%" in result.output
