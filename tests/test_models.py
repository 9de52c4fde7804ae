"""Model perception end to end with tiny saved models, loaded the way users load real ones."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import read_table, write_spec
from forge.cli import main
from forge.perception.synthetic_scene import render_scene
from tiny_models import save_tiny_depth, save_tiny_owlvit
from udfs.depth import DepthModel
from udfs.loading import pick_device

VOCAB = ["red cube", "blue cube", "green prism", "yellow cylinder"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return save_tiny_depth(root / "depth"), save_tiny_owlvit(root / "owl")


def models_spec(depth: str, owl: str) -> dict:
    return {
        "version": 1, "name": "tiny_models", "source": {"kind": "images", "path": "photos"},
        "perception": {"kind": "models", "depth": {"model": depth, "batch_size": 4},
                       "grounding": {"model": owl, "vocabulary": VOCAB, "threshold": 0.01, "max_objects": 6, "batch_size": 4}},
        "verify": {"drop_truncated": False, "unique_labels": False},
        "families": [{"name": "depth_order", "relation": "depth_order", "min_margin": 0.0, "questions": [{
            "answer_type": "two_choice", "choices": ["{a}", "{b}"], "answer": {"if_true": "{a}", "if_false": "{b}"},
            "templates": ["Closer: the {a} or the {b}?", "Nearer: the {a} or the {b}?", "In front: the {a} or the {b}?"]}]}],
    }


def write_photos(folder, count: int = 6) -> None:
    folder.mkdir()
    for i in range(count):
        Image.fromarray(render_scene(1, i, 160, 120, 3, 5).rgb).save(folder / f"p{i}.jpg")


def test_build_with_local_models(tmp_path, models):
    depth, owl = models
    write_photos(tmp_path / "photos")
    spec = write_spec(tmp_path, models_spec(str(depth), str(owl)))
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(tmp_path / "db")])
    assert result.exit_code == 0, result.output
    rows = read_table(tmp_path / "db").to_pylist()
    assert rows, result.output
    assert {r["depth_kind"] for r in rows} == {"relative"}
    assert {r["perception"] for r in rows} == {f"depth={depth};grounding={owl}"}
    for row in rows:
        assert {o["label"] for o in row["objects"]} <= set(VOCAB)
        for obj in row["objects"]:
            x1, y1, x2, y2 = obj["box"]
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
        assert row["answer"] in row["choices"]


def test_source_path_may_be_an_absolute_glob(tmp_path):
    from forge.perception.models import list_images
    from forge.spec.schema import ImagesSource

    write_photos(tmp_path / "photos", count=3)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    found = list_images(ImagesSource(kind="images", path=str(tmp_path / "photos" / "*.jpg")), tmp_path / "elsewhere")
    assert [p.rsplit("/", 1)[1] for p in found] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert list_images(ImagesSource(kind="images", path="photos"), tmp_path) == found


def test_relative_depth_is_inverted_to_distance(models):
    depth, _ = models
    model = DepthModel(str(depth), pick_device("cpu"))
    image = Image.fromarray(render_scene(1, 0, 160, 120, 3, 5).rgb)
    import torch

    with torch.inference_mode():
        inputs = model.processor(images=[image.resize((56, 56))], return_tensors="pt", do_resize=False)
        raw = model.model(**inputs).predicted_depth.float().numpy()[0]
    [converted] = model([image])
    assert converted.dtype == np.float32 and converted.shape == raw.shape
    np.testing.assert_allclose(converted, 1.0 / np.clip(raw, 1e-6, None), rtol=1e-5)


def test_missing_model_is_one_line_error(tmp_path, models):
    _, owl = models
    write_photos(tmp_path / "photos", count=1)
    spec = write_spec(tmp_path, models_spec("no-such-org/no-such-depth-model", str(owl)))
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(tmp_path / "db")])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "'no-such-org/no-such-depth-model' is neither a local folder nor in the Hugging Face cache" in result.stderr
    assert not (tmp_path / "db").exists()
