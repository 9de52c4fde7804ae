"""Box-prompted segmentation (SAM) with a tiny saved model: masks at the picture's size, inside
their boxes, cached like the other models, and used for object depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import write_spec
from forge.cli import main
from forge.perception.masks import decode
from helpers import models_spec, write_photos
from tiny_models import save_tiny_depth, save_tiny_owlvit, save_tiny_sam
from udfs.loading import pick_device
from udfs.segmentation import SegmentationModel


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return save_tiny_depth(root / "depth"), save_tiny_owlvit(root / "owl"), save_tiny_sam(root / "sam")


def _inside(mask: np.ndarray, box, width: int, height: int) -> bool:
    ys, xs = np.nonzero(mask)
    x1, y1, x2, y2 = box
    return bool(xs.min() >= np.floor(x1 * width) and xs.max() < np.ceil(x2 * width)
                and ys.min() >= np.floor(y1 * height) and ys.max() < np.ceil(y2 * height))


def test_masks_map_back_from_the_padded_square_to_the_picture(models, monkeypatch):
    """SAM sees the picture scaled into the top-left of a padded square: a mask found there must land
    on the same part of the picture, at the picture's size, and never outside its box."""
    model = SegmentationModel(str(models[2]), pick_device("cpu"), min_mask_fraction=0.05)
    width, height = 200, 100  # in the 64-px square the picture fills rows 0-31; masks are 16 x 16 over the square

    def logits(batch, boxes, sizes):
        out = torch.full((len(boxes[0]), 16, 16), -5.0)
        out[:, 2:6, 4:12] = 5.0  # picture rows 0.25-0.75, columns 0.25-0.75
        return [out]

    monkeypatch.setattr(model, "logits", logits)
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.5, 0.0, 1.0, 1.0], [0.0, 0.0, 0.1, 0.1]])
    [masks] = model(np.zeros((1, 64, 64, 3), np.uint8), [boxes], [(width, height)])
    whole, right, corner = masks
    mask = decode(whole, height, width)
    assert mask.shape == (height, width)
    ys, xs = np.nonzero(mask)
    assert abs(xs.min() - 50) <= 7 and abs(xs.max() - 149) <= 7 and abs(ys.min() - 25) <= 4 and abs(ys.max() - 74) <= 4
    assert _inside(decode(right, height, width), boxes[1], width, height)  # cut to its box
    assert corner is None  # nothing of the mask in that box


def test_tiny_sam_gives_one_mask_or_none_per_box(models):
    model = SegmentationModel(str(models[2]), pick_device("cpu"), min_mask_fraction=0.0)
    from PIL import Image

    from forge.perception.synthetic_scene import render_scene

    sizes = [(160, 120), (90, 200)]
    batch = np.stack([model.inputs.prepare(Image.fromarray(render_scene(1, i, w, h, 3, 4).rgb)) for i, (w, h) in enumerate(sizes)])
    boxes = [np.array([[0.1, 0.1, 0.6, 0.5], [0.3, 0.4, 0.9, 0.95]]), np.zeros((0, 4))]
    first, second = model(batch, boxes, sizes)
    assert len(first) == 2 and second == []
    for counts, box in zip(first, boxes[0]):
        if counts is not None:
            assert _inside(decode(counts, 120, 160), box, 160, 120)


def test_build_with_segmentation_caches_masks_and_reads_depth_under_them(tmp_path, models):
    from forge.perception.model_perceiver import ModelPerceiver
    from forge.perception.tasks import RunOptions
    from forge.spec.load import load_spec
    from forge.store import Store

    depth, owl, sam = models
    write_photos(tmp_path / "photos", count=5)
    spec = models_spec(str(depth), str(owl))
    spec["perception"]["segmentation"] = {"model": str(sam), "batch_size": 2, "min_mask_fraction": 0.0}

    def build(name: str) -> str:
        result = CliRunner().invoke(main, ["build", str(write_spec(tmp_path, spec, name=name)), "--db", str(tmp_path / "db")])
        assert result.exit_code == 0, result.output
        return result.output

    segmentation = spec["perception"].pop("segmentation")
    assert "depth: 5 run, 0 cached; detections: 5 run, 0 cached\n" in build("plain.yaml")
    spec["perception"]["segmentation"] = segmentation  # added later: prompted by the cached boxes, nothing else runs
    output = build("a.yaml")
    assert "depth: 0 run, 5 cached; detections: 0 run, 5 cached; masks: 5 run, 0 cached" in output
    assert "masks: 0 run, 5 cached" in build("a.yaml")
    spec["perception"]["grounding"]["vocabulary"] = ["red cube", "blue cube"]  # new boxes: new masks, same depth
    assert "depth: 0 run, 5 cached; detections: 5 run, 0 cached; masks: 5 run, 0 cached" in build("b.yaml")

    loaded = load_spec(tmp_path / "b.yaml")
    perceiver = ModelPerceiver(loaded, RunOptions(device="cpu"), None)
    perceiver.prepare(Store(tmp_path / "db"), tmp_path / "index")
    records = perceiver.records(0, perceiver.items).to_pylist()
    objects = [o for r in records for o in r["objects"]]
    assert {r["perception"] for r in records} == {f"depth={depth};grounding={owl};segmentation={sam}"}
    masked = [o for o in objects if o["mask"] is not None]
    assert masked and all(o["depth_source"] == "mask" for o in masked)
    assert all(o["depth_source"] == "box_visible" for o in objects if o["mask"] is None)
    for record in records:
        for o in record["objects"]:
            if o["mask"] is not None:
                assert _inside(decode(o["mask"], record["height"], record["width"]), (o["x1"], o["y1"], o["x2"], o["y2"]),
                               record["width"], record["height"])

    pictures = {}
    for flag in ("--masks", "--no-masks"):  # forge show fills the cached masks of the rows' objects
        result = CliRunner().invoke(main, ["show", "--db", str(tmp_path / "db"), "--n", "20", flag, "--out", str(tmp_path / flag)])
        assert result.exit_code == 0, result.output
        pictures[flag] = [np.asarray(Image.open(p), dtype=np.int16) for p in sorted((tmp_path / flag).glob("*.png"))]
    changed = [np.abs(a - b).max(axis=2) > 10 for a, b in zip(pictures["--masks"], pictures["--no-masks"])]
    assert any(c.any() for c in changed)


def test_segmentation_is_in_the_plan_explain_prints(tmp_path, models):
    depth, owl, sam = models
    write_photos(tmp_path / "photos", count=2)
    spec = models_spec(str(depth), str(owl))
    spec["perception"]["segmentation"] = {"model": str(sam)}
    result = CliRunner().invoke(main, ["explain", str(write_spec(tmp_path, spec)), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    models_plan, records_plan = result.output.split("== Perception: records")
    assert all(name in models_plan for name in ("EstimateDepth", "DetectObjects", "SegmentObjects", "PrepareImages"))
    assert "ModelRecord" in records_plan and "EstimateDepth" not in records_plan


def test_a_segmentation_model_that_is_not_sam_is_one_line(tmp_path, models):
    depth, owl, _ = models
    write_photos(tmp_path / "photos", count=1)
    spec = models_spec(str(depth), str(owl))
    spec["perception"]["segmentation"] = {"model": str(depth)}
    result = CliRunner().invoke(main, ["build", str(write_spec(tmp_path, spec)), "--db", str(tmp_path / "db")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "spec.yaml:" in result.stderr and "perception.segmentation.model:" in result.stderr
    assert "is a 'depth_anything' model; forge runs SAM and SAM 2 checkpoints" in result.stderr
