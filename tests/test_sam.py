"""SAM 3 as a grounder that makes masks, and SAM 2 as a box-prompted segmenter, with tiny saved models.

Random weights cannot show quality, so the plumbing is checked against transformers' own post-processing
of the same outputs: the boxes and masks forge stores equal what `post_process_instance_segmentation` (SAM 3)
and `post_process_masks` (SAM 2) make of them. Those functions live in torchvision-only image-processor
modules; they use no torchvision themselves, so the modules are imported here over a stand-in for the one
torchvision function they import at the top (`batched_nms`, which neither function calls).
"""

from __future__ import annotations

import importlib
import sys
import types

import lancedb
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import write_spec
from forge.cli import main
from forge.perception.masks import decode
from forge.perception.synthetic_scene import render_scene
from helpers import models_spec
from tiny_models import save_tiny_depth, save_tiny_owlvit, save_tiny_sam2, save_tiny_sam3
from udfs.grounding import nms
from udfs.loading import pick_device
from udfs.sam3 import Sam3Grounder
from udfs.segmentation import SegmentationModel

VOCABULARY = ["red cube", "blue prism", "green cylinder", "yellow cube", "purple prism"]
SIZES = [(160, 120), (90, 200), (300, 140)]  # one batch of mixed sizes and aspect ratios
THRESHOLD = 0.9


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"depth": save_tiny_depth(root / "depth"), "owl": save_tiny_owlvit(root / "owl"),
            "sam3": save_tiny_sam3(root / "sam3"), "sam2": save_tiny_sam2(root / "sam2")}


def _processor_function(monkeypatch, module: str, cls: str, function: str):
    """A post-processing function of a torchvision-only image processor, imported over a stand-in torchvision."""
    for name in ("torchvision", "torchvision.ops", "torchvision.ops.boxes"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["torchvision.ops.boxes"].batched_nms = None  # imported at the module's top, never called by `function`
    return getattr(getattr(importlib.import_module(module), cls), function)


def _scenes(model_inputs, sizes=SIZES) -> np.ndarray:
    return np.stack([model_inputs.prepare(Image.fromarray(render_scene(3, i, w, h, 3, 5).rgb)) for i, (w, h) in enumerate(sizes)])


def _write_photos(folder, sizes) -> None:
    folder.mkdir()
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(render_scene(3, i, w, h, 3, 5).rgb).save(folder / f"p{i}.png")


def test_sam3_objects_and_masks_are_the_processors_post_processing(models, monkeypatch):
    """Each image of a mixed-size batch encoded once, phrases paired with it: the objects equal SAM 3's own
    per-phrase forward pass read by the processor's post-processing, then forge's rules (a phrase's best
    `max_objects`, NMS across phrases at IoU 0.5, the image's best `max_objects`); a phrase finding
    nothing gives no object."""
    post_process = _processor_function(monkeypatch, "transformers.models.sam3.image_processing_sam3", "Sam3ImageProcessor",
                                       "post_process_instance_segmentation")
    grounder = Sam3Grounder(str(models["sam3"]), pick_device("cpu"), VOCABULARY, THRESHOLD, max_objects=4)
    grounder.pairs_per_pass = 4  # several passes, a pass's pairs spanning two images
    batch = _scenes(grounder.inputs)
    found = grounder(batch, SIZES)

    tokens = grounder.model.config.text_config.max_position_embeddings
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(models["sam3"]))
    pixels = grounder.pixels(batch)
    empty_phrases = 0
    for image, (width, height) in enumerate(SIZES):
        expected = []  # (score, label, box in pixels, mask)
        for phrase in VOCABULARY:
            text = tokenizer([phrase], padding="max_length", max_length=tokens, return_tensors="pt")
            with torch.inference_mode():
                outputs = grounder.model(pixel_values=pixels[image:image + 1], **text)
            [result] = post_process(None, outputs, threshold=THRESHOLD, mask_threshold=0.5, target_sizes=[(height, width)])
            best = result["scores"].argsort(descending=True)[:4]
            empty_phrases += len(best) == 0
            expected += [(float(result["scores"][q]), phrase, result["boxes"][q], result["masks"][q].bool().numpy())
                         for q in best]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes = torch.stack([box / scale for _, _, box, _ in expected]) if expected else torch.zeros(0, 4)
        kept = nms(boxes.clamp(0, 1), torch.tensor([s for s, _, _, _ in expected]), 0.5)[:4] if expected else []
        objects = found[image]
        assert [o["label"] for o in objects] == [expected[k][1] for k in kept]
        for obj, k in zip(objects, kept):
            score, _, box, mask = expected[k]
            assert obj["score"] == pytest.approx(score, abs=1e-4)
            assert np.allclose(np.array(obj["box"]) * scale.numpy(), box.clamp(min=0).numpy().clip(max=scale.numpy()), atol=0.05)
            if mask.any():
                got = decode(obj["mask"], height, width)
                assert got.shape == (height, width) and (got != mask).mean() < 1e-3  # same pixels, at the picture's size
            else:
                assert obj["mask"] is None
    assert empty_phrases > 0  # some phrase finds nothing in some image, and that is no object
    assert any(found)


def test_sam3_build_caches_boxes_and_masks_and_a_rebuild_runs_no_model(tmp_path, models):
    """`grounding: {model: <SAM 3>}` runs no segmentation pass: its masks go into perception_masks beside the
    detections, equal to what the grounder gives for each image, and depth is read under them."""
    _write_photos(tmp_path / "photos", [(160, 120), (120, 160), (200, 100), (160, 120)])
    spec = models_spec(str(models["depth"]), str(models["sam3"]))
    spec["perception"]["grounding"].update(vocabulary=VOCABULARY, threshold=THRESHOLD, max_objects=4, batch_size=3)
    db = tmp_path / "db"

    def build(name: str) -> str:
        result = CliRunner().invoke(main, ["build", str(write_spec(tmp_path, spec, name=name)), "--db", str(db), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        return result.output

    assert "depth: 4 run, 0 cached; detections: 4 run, 0 cached; masks: 4 run, 0 cached\n" in build("sam3.yaml")
    assert "depth: 0 run, 4 cached; detections: 0 run, 4 cached; masks: 0 run, 4 cached\n" in build("sam3.yaml")

    connection = lancedb.connect(db)
    detections = {r["image_id"]: r["detections"] for r in connection.open_table("perception_detections").to_arrow().to_pylist()}
    masks = {r["image_id"]: r["masks"] for r in connection.open_table("perception_masks").to_arrow().to_pylist()}
    assert len(detections) == len(masks) == 4
    grounder = Sam3Grounder(str(models["sam3"]), pick_device("cpu"), VOCABULARY, THRESHOLD, max_objects=4)
    from forge.sources.identity import identify

    ids = identify([str(p) for p in sorted((tmp_path / "photos").glob("*.png"))]).to_pylist()
    for row in ids:
        with Image.open(row["path"]) as image:
            [direct] = grounder(grounder.inputs.prepare(image.convert("RGB"))[None], [image.size])
        stored = detections[row["image_id"]]
        assert [d["label"] for d in stored] == [o["label"] for o in direct]
        assert np.allclose([[d["x1"], d["y1"], d["x2"], d["y2"]] for d in stored], [o["box"] for o in direct], atol=1e-6)
        assert masks[row["image_id"]] == [o["mask"] for o in direct]
    assert sum(len(v) for v in masks.values()) > 0 and any(m is not None for v in masks.values() for m in v)

    assert connection.open_table("qa").count_rows() > 0

    from forge.perception.model_perceiver import ModelPerceiver
    from forge.perception.tasks import RunOptions
    from forge.spec.load import load_spec
    from forge.store import Store

    perceiver = ModelPerceiver(load_spec(tmp_path / "sam3.yaml"), RunOptions(device="cpu"), None)
    perceiver.prepare(Store(db), tmp_path / "index")
    assert perceiver.stats.line() == "depth: 0 run, 4 cached; detections: 0 run, 4 cached; masks: 0 run, 4 cached"
    records = perceiver.records(0, perceiver.items).to_pylist()
    objects = [o for r in records for o in r["objects"]]
    assert objects and {o["depth_source"] for o in objects if o["mask"] is not None} == {"mask"}
    assert sum(o["mask"] is not None for o in objects) == sum(m is not None for v in masks.values() for m in v)


def test_sam3_explain_says_the_grounder_makes_the_masks(tmp_path, models):
    _write_photos(tmp_path / "photos", [(160, 120)])
    spec = models_spec(str(models["depth"]), str(models["sam3"]))
    result = CliRunner().invoke(main, ["explain", str(write_spec(tmp_path, spec)), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    models_plan = result.output.split("== Perception: records")[0]
    assert f"detections: {models['sam3']}; masks: {models['sam3']}, in the detections pass" in models_plan
    assert "DetectObjects" in models_plan and "SegmentObjects" not in models_plan


def test_sam3_grounder_with_a_segmenter_is_refused_in_one_line(tmp_path, models):
    _write_photos(tmp_path / "photos", [(160, 120)])
    spec = models_spec(str(models["depth"]), str(models["sam3"]))
    spec["perception"]["segmentation"] = {"model": str(models["sam2"])}
    for command in ("validate", "build"):
        result = CliRunner().invoke(main, [command, str(write_spec(tmp_path, spec))])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert "spec.yaml:" in result.stderr and "perception.segmentation:" in result.stderr
        assert "is SAM 3, which already makes a mask for every object it finds: remove perception.segmentation" in result.stderr


def test_sam2_masks_are_the_processors_post_processing_cut_to_their_boxes(models, monkeypatch):
    """SAM 2 sees the picture stretched to its square: its masks come back over the whole picture, as its
    processor's `post_process_masks` brings them, then cut to the prompting box."""
    post_process = _processor_function(monkeypatch, "transformers.models.sam2.image_processing_sam2", "Sam2ImageProcessor",
                                       "post_process_masks")
    model = SegmentationModel(str(models["sam2"]), pick_device("cpu"), min_mask_fraction=0.0)
    assert not model.inputs.pads_square and model.inputs.picture_scale(300, 140) == (64.0, 64.0)
    batch = _scenes(model.inputs)
    boxes = [np.array([[0.1, 0.1, 0.6, 0.5], [0.3, 0.4, 0.9, 0.95]]), np.zeros((0, 4)), np.array([[0.0, 0.0, 1.0, 1.0]])]
    masks = model(batch, boxes, SIZES)
    assert [len(m) for m in masks] == [2, 0, 1]
    logits = model.logits(batch, boxes, SIZES)
    for image_masks, image_logits, image_boxes, (width, height) in zip(masks, logits, boxes, SIZES):
        if image_logits is None:
            continue
        [expected] = post_process(None, [image_logits[None].transpose(0, 1)], [(height, width)])
        for counts, full, box in zip(image_masks, expected[:, 0].numpy(), image_boxes):
            x1, y1, x2, y2 = np.round(box * [width, height, width, height]).astype(int)
            cut = np.zeros_like(full)
            cut[y1:y2, x1:x2] = full[y1:y2, x1:x2]
            got = decode(counts, height, width) if counts is not None else np.zeros_like(full)
            assert (got != cut).mean() < 2e-3


def test_sam2_segmentation_added_later_runs_only_the_segmenter(tmp_path, models):
    _write_photos(tmp_path / "photos", [(160, 120), (120, 160), (200, 100)])
    spec = models_spec(str(models["depth"]), str(models["owl"]))
    db = tmp_path / "db"

    def build(name: str) -> str:
        result = CliRunner().invoke(main, ["build", str(write_spec(tmp_path, spec, name=name)), "--db", str(db), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        return result.output

    assert "depth: 3 run, 0 cached; detections: 3 run, 0 cached\n" in build("plain.yaml")
    spec["perception"]["segmentation"] = {"model": str(models["sam2"]), "min_mask_fraction": 0.0, "batch_size": 2}
    assert "depth: 0 run, 3 cached; detections: 0 run, 3 cached; masks: 3 run, 0 cached\n" in build("sam2.yaml")
    assert "masks: 0 run, 3 cached\n" in build("sam2.yaml")
    connection = lancedb.connect(db)
    detections = {r["image_id"]: r["detections"] for r in connection.open_table("perception_detections").to_arrow().to_pylist()}
    masks = {r["image_id"]: r["masks"] for r in connection.open_table("perception_masks").to_arrow().to_pylist()}
    assert set(masks) == set(detections) and all(len(masks[i]) == len(detections[i]) for i in masks)
    assert any(m is not None for v in masks.values() for m in v)
