"""Model perception end to end with tiny saved models, loaded the way users load real ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import read_table, write_spec
from helpers import VOCAB, RecordingProgress, models_spec, write_photos
from forge.cli import main
from forge.perception.synthetic_scene import render_scene
from tiny_models import save_tiny_depth, save_tiny_grounding_dino, save_tiny_owlvit
from transformers import DPTImageProcessorPil, OwlViTProcessor

from udfs.depth import DepthModel, stored_shape
from udfs.grounding import GroundingModel
from udfs.loading import pick_device

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return save_tiny_depth(root / "depth"), save_tiny_owlvit(root / "owl")


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
    from forge.sources import listing
    from forge.spec.schema import ImagesSource

    write_photos(tmp_path / "photos", count=3)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    found = listing(ImagesSource(kind="images", path=str(tmp_path / "photos" / "*.jpg")), tmp_path / "elsewhere")
    assert found.total == 3
    assert [p.rsplit("/", 1)[1] for p, _ in found.entries()] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert list(listing(ImagesSource(kind="images", path="photos"), tmp_path).entries()) == list(found.entries())


@pytest.mark.parametrize("pattern", ["p/*.jpg", "p/**/*.jpg", "p/**", "p/x/**/*.jpg", "p/c?.jpg", "p/[ab].*",
                                     "p/*/a.*", "p/**/y/*", "p/d/**/g.webp", "p/x*/*.jpg", "p/none/*.jpg"])
def test_a_glob_is_walked_lazily_and_matches_what_glob_lists(tmp_path, pattern):
    import glob

    from forge.errors import ForgeError
    from forge.sources import listing
    from forge.sources.uris import IMAGE_SUFFIXES
    from forge.spec.schema import ImagesSource

    for name in ["a.jpg", "b.png", "x/a.jpg", "x/y/z.JPG", "x/.hidden.jpg", ".h/q.jpg", "x-y/a.jpg", "x/y/b.txt",
                 "c1.jpg", "c2.jpg", "cc.jpg", "d/e/f/g.webp", "x/a.png"]:
        (tmp_path / "p" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "p" / name).write_bytes(b"x")
    expected = sorted(str(Path(p).parent.resolve() / Path(p).name) for p in glob.glob(str(tmp_path / pattern), recursive=True)
                      if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
    if not expected:
        with pytest.raises(ForgeError, match="no image files"):
            listing(ImagesSource(kind="images", path=pattern), tmp_path)
        return
    found = listing(ImagesSource(kind="images", path=pattern), tmp_path)
    assert [p for p, _ in found.entries()] == expected and found.total == len(expected)


def test_a_walk_does_not_follow_links_to_folders_and_names_an_unreadable_one(tmp_path, monkeypatch):
    import os

    import forge.sources.folder as listing_module
    from forge.errors import ForgeError
    from forge.sources import listing
    from forge.spec.schema import ImagesSource

    (tmp_path / "photos").mkdir()
    write_photos(tmp_path / "photos" / "inner", count=2)
    (tmp_path / "photos" / "inner" / "loop").symlink_to(tmp_path / "photos")  # a walk that followed it would never end
    found = listing(ImagesSource(kind="images", path="photos"), tmp_path)
    assert [p.rsplit("/", 1)[1] for p, _ in found.entries()] == ["p0.jpg", "p1.jpg"]

    real = os.scandir

    def scandir(path):
        if str(path).endswith("inner"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(listing_module.os, "scandir", scandir)
    with pytest.raises(ForgeError, match="^source.path: cannot list .*inner: Permission denied$"):
        listing(ImagesSource(kind="images", path="photos"), tmp_path)


def test_a_folder_is_walked_in_sorted_path_order_and_read_a_window_at_a_time(tmp_path):
    from forge.sources import listing
    from forge.spec.schema import ImagesSource

    names = ["a-b.jpg", "a/x.jpg", "a/b/c.png", "a.jpg", "b.JPG", "Z.webp", "a/b.jpg", "a/notes.txt", "c d/e.jpg"]
    for name in names:
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / name).write_bytes(b"x")
    found = listing(ImagesSource(kind="images", path="photos"), tmp_path)
    root = str((tmp_path / "photos").resolve())
    expected = sorted(f"{root}/{n}" for n in names if not n.endswith(".txt"))
    assert found.total == len(expected)
    assert [p for p, _ in found.entries()] == expected  # the order of the sorted paths, as a glob gives
    windows = list(found.windows(3, limit=7))
    assert [len(w) for w in windows] == [3, 3, 1]
    assert [p for w in windows for p, _ in w] == expected[:7]


def test_relative_depth_is_inverted_and_stored_small(models):
    depth, _ = models
    model = DepthModel(str(depth), pick_device("cpu"))
    image = Image.fromarray(render_scene(1, 0, 160, 120, 3, 5, clutter=False).rgb)
    prepared = model.inputs.prepare(image)
    assert prepared.shape == (56, 56, 3) and prepared.dtype == np.uint8
    reference = DPTImageProcessorPil.from_pretrained(depth)(images=[prepared], do_resize=False, return_tensors="pt")
    with torch.inference_mode():
        raw = model.model(pixel_values=reference["pixel_values"]).predicted_depth.float().numpy()[0]
    distance = model.predict(prepared[None])[0].numpy()[0]
    np.testing.assert_allclose(distance, 1.0 / np.clip(raw, 1e-6, None), rtol=1e-4)
    [stored], [fov] = model(prepared[None], [(160, 120)])
    assert fov is None and model.kind == "relative"  # Depth Anything relative: no field of view, no metres
    assert stored.dtype == np.float16 and stored.shape == stored_shape(160, 120) == (120, 160)
    assert stored_shape(4000, 3000) == (192, 256)
    assert np.isfinite(stored).all() and (stored > 0).all()


def test_owl_scores_and_boxes_match_the_processor(models):
    _, owl = models
    model = GroundingModel(str(owl), pick_device("cpu"), VOCAB, threshold=0.01, max_objects=5)
    image = Image.fromarray(render_scene(1, 2, 160, 120, 3, 5, clutter=False).rgb)
    prepared = model.inputs.prepare(image)
    assert prepared.shape == (64, 64, 3)
    processor = OwlViTProcessor.from_pretrained(owl)
    reference = processor(text=[VOCAB], images=[prepared], return_tensors="pt", padding=True)
    with torch.inference_mode():
        outputs = model.model(**reference)
    [expected] = processor.post_process_grounded_object_detection(outputs, threshold=0.5, target_sizes=[(120, 160)])
    scores, boxes = model.scores_and_boxes(prepared[None], [(160, 120)])
    best, label = scores[0].max(-1)
    chosen = best >= 0.5
    assert int(chosen.sum()) == len(expected["scores"]) > 0
    torch.testing.assert_close(best[chosen], expected["scores"].float(), atol=1e-4, rtol=1e-4)
    assert label[chosen].tolist() == expected["labels"].tolist()
    scale = torch.tensor([160, 120, 160, 120])
    torch.testing.assert_close(boxes[0][chosen] * scale, expected["boxes"].float().clamp(min=0).minimum(scale), atol=1e-3, rtol=1e-4)
    [objects] = model(prepared[None], [(160, 120)])
    assert 0 < len(objects) <= 5
    found = [o["score"] for o in objects]
    assert found == sorted(found, reverse=True)
    for obj in objects:
        assert obj["label"] in VOCAB and 0 <= obj["box"][0] < obj["box"][2] <= 1


def test_owlv2_boxes_are_mapped_from_the_padded_square(tmp_path):
    folder = save_tiny_owlvit(tmp_path / "owlv2", version=2)
    model = GroundingModel(str(folder), pick_device("cpu"), VOCAB, threshold=0.01, max_objects=5)
    assert model.inputs.pads_square
    width, height = 160, 80  # wide: the square pads 80 rows below the picture
    image = Image.fromarray(render_scene(1, 3, width, height, 2, 3, clutter=False).rgb)
    prepared = model.inputs.prepare(image)
    assert prepared.shape == (64, 64, 3) and (prepared[40:] == 128).all()  # padding is the bottom half
    with torch.inference_mode():
        text = {k: v for k, v in model.captions[0][0].items()}
        outputs = model.model(pixel_values=model.pixels(prepared[None]), **text)
    processor = model.inputs.processor
    [expected] = processor.post_process_grounded_object_detection(outputs, threshold=0.5, target_sizes=[(width, width)])
    scores, boxes = model.scores_and_boxes(prepared[None], [(width, height)])
    chosen = scores[0].max(-1).values >= 0.5
    assert int(chosen.sum()) == len(expected["boxes"]) > 0
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    reference = expected["boxes"].float().clamp(min=0).minimum(scale)
    torch.testing.assert_close(boxes[0][chosen] * scale, reference, atol=1e-3, rtol=1e-4)


def test_grounding_dino_scores_each_name_by_its_tokens(tmp_path):
    folder = save_tiny_grounding_dino(tmp_path / "dino", max_text_len=12)
    vocabulary = ["red cube", "blue prism", "green cylinder", "yellow cube", "orange prism"]
    model = GroundingModel(str(folder), pick_device("cpu"), vocabulary, threshold=0.05, max_objects=4)
    assert len(model.captions) > 1  # five names do not fit 12 tokens: the vocabulary was split
    tokenizer = model.inputs.processor.tokenizer
    for text, spans in model.captions:
        ids = text["input_ids"][0].tolist()
        assert len(ids) <= 12
        named = [tokenizer.decode(ids[lo:hi]) for lo, hi in spans]
        assert all(name in vocabulary for name in named)
    image = Image.fromarray(render_scene(1, 0, 200, 150, 3, 5, clutter=False).rgb)
    prepared = model.inputs.prepare(image)
    scores, boxes = model.scores_and_boxes(prepared[None], [(200, 150)])
    assert scores.shape == (1, 20, len(vocabulary)) and boxes.shape == (1, 20, 4)
    [objects] = model(prepared[None], [(200, 150)])
    assert 0 < len(objects) <= 4
    assert all(o["label"] in vocabulary and 0 <= o["box"][0] < o["box"][2] <= 1 for o in objects)


def _build(tmp_path, spec: dict, *args: str):
    path = write_spec(tmp_path, spec, name=f"spec_{len(list(tmp_path.glob('spec_*.yaml')))}.yaml")
    result = CliRunner().invoke(main, ["build", str(path), "--db", str(tmp_path / "db"), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_batch_size_does_not_change_rows(tmp_path, models):
    depth, owl = models
    write_photos(tmp_path / "photos", count=9)
    spec = models_spec(str(depth), str(owl))
    one = tmp_path / "one"
    one.mkdir()
    (one / "photos").symlink_to(tmp_path / "photos")
    eight = tmp_path / "eight"
    eight.mkdir()
    (eight / "photos").symlink_to(tmp_path / "photos")
    _build(one, spec, "--batch-size", "1")
    _build(eight, spec, "--batch-size", "8")
    first, second = read_table(one / "db"), read_table(eight / "db")
    assert first.num_rows > 0 and first.equals(second)


@pytest.fixture
def model_calls(monkeypatch):
    """Images each model wrapper was called on, counted around the real forward."""
    calls = {"depth": 0, "grounding": 0}
    for name, cls in (("depth", DepthModel), ("grounding", GroundingModel)):
        original = cls.__call__

        def counting(self, batch, sizes, _name=name, _original=original):
            calls[_name] += len(batch)
            return _original(self, batch, sizes)

        monkeypatch.setattr(cls, "__call__", counting)
    return calls


def test_cache_runs_each_model_only_when_its_inputs_change(tmp_path, models, model_calls):
    depth, owl = models
    write_photos(tmp_path / "photos", count=5)
    spec = models_spec(str(depth), str(owl))

    def build_counting(*args: str) -> tuple[dict, str]:
        before = dict(model_calls)
        output = _build(tmp_path, spec, *args)
        return {k: model_calls[k] - before[k] for k in model_calls}, output

    ran, output = build_counting()
    assert ran == {"depth": 5, "grounding": 5}
    assert "depth: 5 run, 0 cached; detections: 5 run, 0 cached" in output
    rows = read_table(tmp_path / "db")

    ran, output = build_counting()
    assert ran == {"depth": 0, "grounding": 0}
    assert "depth: 0 run, 5 cached; detections: 0 run, 5 cached" in output
    assert read_table(tmp_path / "db").equals(rows)

    spec["verify"]["min_score"] = 0.02  # verification and templates never touch perception
    spec["families"][0]["questions"][0]["templates"][0] = "Which is nearer, the {a} or the {b}?"
    assert build_counting()[0] == {"depth": 0, "grounding": 0}

    spec["perception"]["grounding"]["vocabulary"] = VOCAB[:3]
    assert build_counting()[0] == {"depth": 0, "grounding": 5}

    spec["perception"]["depth"]["model"] = str(save_tiny_depth(tmp_path / "other_depth", seed=1))
    assert build_counting()[0] == {"depth": 5, "grounding": 0}

    ran, output = build_counting("--no-cache")
    assert ran == {"depth": 5, "grounding": 5}
    assert "depth: 5 run, 0 cached; detections: 5 run, 0 cached" in output


def test_model_progress_counts_identify_model_and_record_stages(tmp_path, models, monkeypatch):
    from forge.build import run_build
    from forge.spec.load import load_spec

    import forge.perception.models as perception_models

    depth, owl = models
    write_photos(tmp_path / "photos", count=6)
    spec = load_spec(write_spec(tmp_path, models_spec(str(depth), str(owl))))
    progress = RecordingProgress()
    perception_models._LOADED.clear()
    loads = {}
    workers = dict(perception_models.WORKERS)
    for output, (name, load) in workers.items():
        def counted(task_, spec_, device, load=load, task={"depth": "depth", "detections": "grounding"}.get(output, output)):
            loads[task] = loads.get(task, 0) + 1
            return load(task_, spec_, device)
        monkeypatch.setitem(perception_models.WORKERS, output, (name, counted))
    report = run_build(spec, tmp_path / "db", echo=lambda _: None, progress=progress, chunk_size=4)
    bars = {bar["label"]: bar for bar in progress.bars}
    judging = ["judging, pass 1 of 2: counting (2 chunks)", "judging, pass 2 of 2: phrasing and writing (2 chunks)"]
    assert list(bars) == ["perceiving with depth + grounding", "reading perception", *judging]
    assert [bar["total"] for bar in bars.values()] == [6, 6, 6, 6]
    assert [sum(bar["updates"]) for bar in bars.values()] == [6, 6, 6, 6]
    # windows of 4 images (the chunk size), each identified then run in model batches of 4 as they finish
    assert [n for n in bars["perceiving with depth + grounding"]["updates"] if n] == [4, 2]
    assert loads == {"depth": 1, "grounding": 1}  # each model loaded once, not once per window
    assert {s.name: s.counts for s in report.stages.stages} == {
        "setup": {}, "identify": {"images": 6}, "models": {"images": 6}, "perceive": {"images": 6},
        "count": {"images": 6, "candidates": sum(sum(f.values()) for f in report.funnel.values())},
        "write": {"QA": report.qa_rows}, "commit": {"QA": report.qa_rows}, "index": {"QA": report.qa_rows}}

    progress = RecordingProgress()
    report = run_build(spec, tmp_path / "db", echo=lambda _: None, progress=progress)
    assert [bar["label"] for bar in progress.bars] == ["perceiving with depth + grounding", "reading perception",
                                                       *[j.replace("2 chunks", "1 chunks") for j in judging]]
    assert progress.bars[0]["updates"] == [6]  # all cached: the window is done once identified
    assert report.stages.get("models").counts == {"images": 0}


def test_a_build_that_dies_between_windows_resumes_at_the_next_window(tmp_path, models, monkeypatch):
    from forge.build import run_build
    from forge.perception.model_perceiver import ModelPerceiver
    from forge.spec.load import load_spec

    depth, owl = models
    write_photos(tmp_path / "photos", count=7)
    shutil.copy(tmp_path / "photos" / "p1.jpg", tmp_path / "photos" / "p6.jpg")  # met again in the last window
    spec = load_spec(write_spec(tmp_path, models_spec(str(depth), str(owl))))
    reference = run_build(spec, tmp_path / "reference", echo=lambda _: None, chunk_size=3)
    assert reference.models.run == {"depth": 6, "grounding": 6}  # the copy is served from the cache
    assert reference.models.cached == {"depth": 1, "grounding": 1}
    assert reference.duplicates == 1 and reference.images == 6  # the copy is asked about once

    window = ModelPerceiver._window
    calls = []

    def dies_in_the_second_window(self, entries, *args):
        calls.append(len(entries))
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill would, after the first window was staged
        return window(self, entries, *args)

    monkeypatch.setattr(ModelPerceiver, "_window", dies_in_the_second_window)
    with pytest.raises(KeyboardInterrupt):
        run_build(spec, tmp_path / "db", echo=lambda _: None, chunk_size=3)
    monkeypatch.setattr(ModelPerceiver, "_window", window)
    report = run_build(spec, tmp_path / "db", echo=lambda _: None, chunk_size=3)
    assert report.models.run == {"depth": 3, "grounding": 3}  # the first window is neither identified nor run again
    assert report.stages.get("identify").counts == {"images": 4}
    assert read_table(tmp_path / "db").equals(read_table(tmp_path / "reference"))


def test_an_image_that_fails_to_decode_fails_again_in_a_later_window(tmp_path, models):
    from forge.build import run_build
    from forge.spec.load import load_spec

    depth, owl = models
    write_photos(tmp_path / "photos", count=4)
    whole = (tmp_path / "photos" / "p0.jpg").read_bytes()
    for name in ("a_cut.jpg", "z_cut.jpg"):  # the header reads (identify passes), the pixels do not (decode fails)
        (tmp_path / "photos" / name).write_bytes(whole[:len(whole) * 2 // 3])
    spec = load_spec(write_spec(tmp_path, models_spec(str(depth), str(owl))))
    report = run_build(spec, tmp_path / "db", echo=lambda _: None, chunk_size=2)
    assert report.skipped.counts == {next(iter(report.skipped.counts)): 2} and "decode" in next(iter(report.skipped.counts))
    errors = {r["image_uri"].rsplit("/", 1)[1] for r in read_table(tmp_path / "db", "errors", "image_uri").to_pylist()}
    assert errors == {"a_cut.jpg", "z_cut.jpg"}  # the copy in the last window is not taken for a cached image
    assert report.images == 6 and report.models.run == {"depth": 4, "grounding": 4}
    assert report.models.cached == {"depth": 0, "grounding": 0}


def test_new_weights_at_the_same_path_restart_an_interrupted_build(tmp_path, models, monkeypatch):
    from forge.build import run_build
    from forge.perception.model_perceiver import ModelPerceiver
    from forge.spec.load import load_spec

    _, owl = models
    depth = save_tiny_depth(tmp_path / "depth")
    write_photos(tmp_path / "photos", count=5)
    spec = load_spec(write_spec(tmp_path, models_spec(str(depth), str(owl))))
    window = ModelPerceiver._window
    calls = []

    def dies_in_the_third_window(self, entries, *args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return window(self, entries, *args)

    monkeypatch.setattr(ModelPerceiver, "_window", dies_in_the_third_window)
    with pytest.raises(KeyboardInterrupt):
        run_build(spec, tmp_path / "db", echo=lambda _: None, chunk_size=2)
    monkeypatch.setattr(ModelPerceiver, "_window", window)
    save_tiny_depth(depth, seed=1)  # other weights, same folder: the staged windows were perceived with the old ones
    report = run_build(load_spec(tmp_path / "spec.yaml"), tmp_path / "db", echo=lambda _: None, chunk_size=2)
    assert report.images == 5 and report.models.run["depth"] == 5 and report.resumed["perceived"] == 0


def test_show_overlays_the_cached_depth_of_model_builds(tmp_path, models):
    depth, owl = models
    write_photos(tmp_path / "photos", count=4)
    _build(tmp_path, models_spec(str(depth), str(owl)))
    outputs = {}
    for name, extra in (("plain", []), ("depth", ["--depth"])):
        result = CliRunner().invoke(main, ["show", "--db", str(tmp_path / "db"), "--n", "1", *extra, "--out",
                                           str(tmp_path / name)])
        assert result.exit_code == 0 and "no depth overlay" not in result.output, result.output
        [png] = (tmp_path / name).glob("*.png")
        outputs[name] = np.asarray(Image.open(png), dtype=np.int16)
    changed = np.abs(outputs["depth"] - outputs["plain"]).max(axis=2) > 20
    assert changed.mean() > 0.3  # the overlay covers the picture (not only the boxes)


def test_missing_model_offline_is_one_line_error(tmp_path, models):
    _, owl = models
    write_photos(tmp_path / "photos", count=1)
    spec = write_spec(tmp_path, models_spec("no-such-org/no-such-depth-model", str(owl)))
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(tmp_path / "db"), "--offline"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "'no-such-org/no-such-depth-model' is neither a local folder nor in the Hugging Face cache" in result.stderr
    assert "forge models pull no-such-org/no-such-depth-model --to models" in result.stderr
    assert not (tmp_path / "db").exists()


def test_models_pull_without_network_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = CliRunner().invoke(main, ["models", "pull", "depth-anything/Depth-Anything-V2-Small-hf", "--to", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot download model 'depth-anything/Depth-Anything-V2-Small-hf': ")
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("same_model", [True, False])
def test_second_depth_model_vetoes_pairs_it_orders_differently(tmp_path, models, same_model):
    depth, owl = models
    write_photos(tmp_path / "photos", count=6)
    spec = models_spec(str(depth), str(owl))
    check = depth if same_model else save_tiny_depth(tmp_path / "check", seed=3)
    spec["perception"]["depth_check"] = {"model": str(check), "batch_size": 4}
    spec["verify"]["depth_agreement"] = True
    output = _build(tmp_path, spec)
    assert "check depth: 6 run, 0 cached" in output
    dropped = int(next(line for line in output.splitlines() if "depth_agreement" in line).split()[-1])
    kept = int(next(line for line in output.splitlines() if "= kept" in line).split()[-1])
    if same_model:
        assert dropped == 0 and kept > 0  # a model always agrees with itself
    else:
        assert dropped > 0
    assert "check depth: 0 run, 6 cached" in _build(tmp_path, spec)


def test_flip_check_runs_mirrored_models_and_vetoes_inconsistent_tuples(tmp_path, models, model_calls):
    depth, owl = models
    write_photos(tmp_path / "photos", count=6)
    spec = models_spec(str(depth), str(owl))
    spec["perception"]["flip_check"] = True
    spec["verify"]["flip_consistency"] = True
    output = _build(tmp_path, spec)
    assert "mirrored depth: 6 run, 0 cached; mirrored detections: 6 run, 0 cached" in output
    assert model_calls == {"depth": 12, "grounding": 12}  # original and mirrored images
    counts = {line.split()[1]: int(line.split()[-1]) for line in output.splitlines() if line.strip().startswith(("-", "="))}
    considered = int(next(line for line in output.splitlines() if "candidates considered" in line).split()[1])
    # random models disagree with themselves under mirroring on some pairs, not on all
    assert 0 < counts["flip_consistency"] < considered and counts["kept"] > 0
    assert "mirrored depth: 0 run, 6 cached" in _build(tmp_path, spec)
    assert model_calls == {"depth": 12, "grounding": 12}


@pytest.mark.parametrize("rule, message", [
    ("depth_agreement", "verify.depth_agreement: needs a second depth model"),
    ("flip_consistency", "verify.flip_consistency: needs the mirrored run"),
])
def test_cross_check_rule_without_its_perception_is_a_spec_error(tmp_path, models, rule, message):
    depth, owl = models
    write_photos(tmp_path / "photos", count=1)
    spec = models_spec(str(depth), str(owl))
    spec["verify"][rule] = True
    result = CliRunner().invoke(main, ["validate", str(write_spec(tmp_path, spec))])
    assert result.exit_code == 2 and message in result.stderr


def test_model_workers_request_one_gpu_each_with_the_configured_concurrency_and_batch(tmp_path, models):
    depth, owl = models
    write_photos(tmp_path / "photos", count=2)
    spec = write_spec(tmp_path, models_spec(str(depth), str(owl)))
    args = ["explain", str(spec), "--device", "cuda", "--concurrency", "4", "--batch-size", "16"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    plan = result.output.split("== Physical Plan ==")[1]
    udfs = [block for block in plan.split("* UDF ")[1:] if "EstimateDepth" in block[:120] or "DetectObjects" in block[:120]]
    assert {name for name in ("EstimateDepth", "DetectObjects") for block in udfs if name in block[:120]} == {
        "EstimateDepth", "DetectObjects"}  # each may print more than once: the plan tree repeats shared inputs
    for block in udfs:
        flat = " ".join(block.split())
        assert "Resource request = { num_gpus = 1 }" in flat and "concurrency = 4" in flat and "batch_size = 16" in flat
    cpu = CliRunner().invoke(main, ["explain", str(spec), "--device", "cpu"]).output.split("== Physical Plan ==")[1]
    assert "num_gpus = 1" not in cpu and "concurrency = 1" in " ".join(cpu.split())


def test_auto_device_on_ray_follows_the_clusters_gpus(monkeypatch):
    import ray

    from forge.runner import model_device

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64.0, "GPU": 8.0})
    assert model_device("auto", "ray") == "cuda"
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64.0})
    assert model_device("auto", "ray") == "cpu"
    assert model_device("cpu", "ray") == "cpu" and model_device("cuda", "native") == "cuda"
