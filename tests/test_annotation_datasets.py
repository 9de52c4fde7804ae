"""Human boxes, model depth: COCO, LVIS-style and Open Images files with the defects real ones have build
with `grounding: annotations` and a tiny depth model, and give exactly the rows the rules imply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from annotated_data import build_dataset, expected_counts, expected_pairs, kept_boxes, write
from conftest import demo_dict, read_table, write_spec
from forge.build import run_build
from forge.cli import main
from forge.spec.load import load_spec

COUNTING = {"name": "counting", "relation": "counting", "min_margin": 0.5, "max_count": 10, "duplicate_iou": 0.5,
            "balance": {"by": "none"},
            "questions": [{"answer_type": "number", "answer": "{count}", "templates": ["How many {a} are there?", "Count the {a}.", "What is the number of {a}?"]}]}


@pytest.fixture(scope="module")
def depth_model(tmp_path_factory) -> Path:
    from tiny_models import save_tiny_depth

    return save_tiny_depth(tmp_path_factory.mktemp("models") / "depth")


def annotated_spec(source: dict, depth_model: Path, name: str = "annotated") -> dict:
    spec = demo_dict()
    spec["name"] = name
    spec["source"] = source
    spec["perception"] = {"kind": "models", "grounding": "annotations", "depth": {"model": str(depth_model)}}
    spec["verify"]["max_occlusion"] = None  # occlusion is measured on depth: a tiny model's is noise
    spec["families"] = [*spec["families"], COUNTING]
    for family in spec["families"]:
        family["balance"] = {"by": "none"}  # every verified row is kept: the test compares them all
    return spec


def _ids(dataset, fmt: str) -> dict[int, str]:
    """COCO annotation id -> the annotation id forge records for the format (Open Images: the CSV row)."""
    if fmt != "openimages":
        return {b.annotation: str(b.annotation) for p in dataset.pictures for b in p.boxes}
    boxes = [b for p in dataset.pictures for b in p.boxes]
    return {b.annotation: f"row {n}" for n, b in enumerate(boxes, start=1)}


@pytest.mark.parametrize("fmt", ["coco", "lvis", "openimages"])
def test_a_dataset_with_real_defects_gives_the_rows_the_rules_imply(tmp_path, depth_model, fmt):
    dataset, scenes = build_dataset(12, flags=fmt == "openimages")
    source = write(dataset, scenes, tmp_path / "data", fmt)
    lines: list[str] = []
    report = run_build(load_spec(write_spec(tmp_path, annotated_spec(source, depth_model))), tmp_path / "db",
                       echo=lines.append)
    rows = read_table(tmp_path / "db").to_pylist()
    ids = _ids(dataset, fmt)
    stem = lambda row: Path(row["image_uri"]).stem  # noqa: E731

    # counting: exactly the groups the rules allow, each with its true count
    expected = expected_counts(dataset, COUNTING["max_count"], COUNTING["duplicate_iou"], fmt == "lvis")
    counted = {(stem(r), r["objects"][0]["label"]): int(r["answer"]) for r in rows if r["family"] == "counting"}
    assert counted == expected
    assert ("photo_000", dataset.pictures[0].boxes[0].label) not in counted  # a crowd box among them
    assert (("photo_002", dataset.pictures[2].boxes[0].label) in counted) == (fmt != "lvis")  # LVIS: not exhaustive
    # left/right: exactly the pairs of single, whole, unique, large-enough objects far enough apart, answered right
    pairs = {(picture, frozenset(ids[int(i)] for i in key)) for picture, key in expected_pairs(dataset, 0.001, 0.05)}
    asked = [r for r in rows if r["family"] == "left_right"]
    assert {(stem(r), frozenset(r["annotation_ids"])) for r in asked} == pairs and len(asked) == len(pairs)
    for r in asked:
        ca, cb = [(o["box"][0] + o["box"][2]) / 2 for o in r["objects"]]
        assert r["answer"] == ("left" if ca < cb else "right"), r["question"]
    # no row names a crowd, a depiction or an exact duplicate; none but counting a truncated object (a cut-off
    # cup is still a cup to count, but its box and depth are not the object's to compare)
    boxes = [b for p in dataset.pictures for b in p.boxes]
    never = {ids[b.annotation] for b in boxes if b.crowd or b.depiction or b.duplicate_of is not None}
    truncated = {ids[b.annotation] for b in boxes if b.truncated}
    named = {i for r in rows if r["annotation_ids"] for i in r["annotation_ids"]}
    assert named and not named & never
    assert not {i for r in rows if r["family"] != "counting" for i in r["annotation_ids"]} & truncated
    # every named object's box is its annotation's box
    boxes_by_id = {ids[b.annotation]: b.fractions() for p in dataset.pictures for b in kept_boxes(p)}
    for r in rows:
        if r["family"] != "counting":
            for obj, annotation in zip(r["objects"], r["annotation_ids"]):
                assert obj["box"] == pytest.approx(boxes_by_id[annotation], abs=1e-9)
    assert {r["source_dataset"] for r in rows} == {"instances" if fmt != "openimages" else "boxes"}
    assert any(line.startswith("annotations: 12 images" if fmt != "openimages" else "annotations: 11 images")
               for line in lines), lines
    assert report.skipped.counts == {}
    if fmt == "openimages":  # the flags decide: without them the depiction and the truncated object would be asked
        for box in (b for p in dataset.pictures for b in p.boxes):
            box.truncated = box.depiction = False
        unflagged = {(s, frozenset(ids[int(i)] for i in key)) for s, key in expected_pairs(dataset, 0.001, 0.05)}
        assert unflagged - pairs


def test_the_same_objects_as_coco_json_and_open_images_csv_give_the_same_rows(tmp_path, depth_model):
    dataset, scenes = build_dataset(10, flags=False)
    tables = {}
    for fmt in ("coco", "openimages"):
        folder = tmp_path / fmt
        folder.mkdir()
        source = write(dataset, scenes, folder / "data", fmt)
        run_build(load_spec(write_spec(folder, annotated_spec(source, depth_model))), folder / "db", echo=lambda _: None)
        tables[fmt] = sorted((Path(r["image_uri"]).name, r["family"], r["question"], r["answer"],
                              tuple(tuple(round(v, 12) for v in o["box"]) for o in r["objects"]))
                             for r in read_table(folder / "db").to_pylist())
    assert tables["coco"] and tables["coco"] == tables["openimages"]
    assert {row[1] for row in tables["coco"]} == {"depth_order", "left_right", "counting"}


def test_annotation_masks_are_kept_and_segmentation_fills_the_rest(tmp_path, depth_model):
    """COCO masks where the file has them, the segmenter (prompted by the dataset's boxes) for the others;
    `forge show` finds the same masks; the cache keys say where the boxes came from."""
    import numpy as np

    from scene_data import make_dataset
    from tiny_models import save_tiny_sam
    from forge.perception.cache import DETECTIONS_TABLE, MASKS_TABLE
    from forge.show import MaskSource

    scenes = make_dataset(tmp_path / "data", "npy_m", count=6, masks=True)
    coco = json.loads((tmp_path / "data" / "instances.json").read_text())
    for annotation in coco["annotations"][::2]:
        del annotation["segmentation"]  # every other object has no mask of its own
    (tmp_path / "data" / "instances.json").write_text(json.dumps(coco))
    masked = {str(a["id"]) for a in coco["annotations"] if "segmentation" in a}
    source = {"kind": "annotations", "instances": "data/instances.json", "images": "data/images"}
    spec = annotated_spec(source, depth_model)
    spec["perception"]["segmentation"] = {"model": str(save_tiny_sam(tmp_path / "sam"))}
    path = write_spec(tmp_path, spec)
    run_build(load_spec(path), tmp_path / "db", echo=lambda _: None)
    rows = [r for r in read_table(tmp_path / "db").to_pylist() if r["family"] != "counting"]
    masks = MaskSource(tmp_path / "db")
    checked = 0
    for row in rows:
        scene = scenes[Path(row["image_uri"]).name]
        for mask, annotation, obj in zip(masks({**row, "spec_name": spec["name"]}, None), row["annotation_ids"],
                                         row["objects"]):
            assert mask is not None and mask.shape == (240, 320)
            if annotation in masked:  # the annotation's own mask: the object's visible pixels, exactly
                index = [i for i, a in enumerate(coco["annotations"]) if str(a["id"]) == annotation][0]
                truth = scene.mask([o.box_px for o in scene.objects].index(tuple(
                    int(round(v * s)) for v, s in zip(obj["box"], (320, 240, 320, 240)))))
                assert np.array_equal(mask, truth), (annotation, index)
                checked += 1
    assert checked > 0
    keys = {name: {r["key"] for r in read_table(tmp_path / "db", name, "image_id").to_pylist()}
            for name in (DETECTIONS_TABLE, MASKS_TABLE)}
    assert len(keys[DETECTIONS_TABLE]) == 1 and len(keys[MASKS_TABLE]) == 1
    # another label map: other boxes (a new detections key), the same pictures (depth served from the cache)
    (tmp_path / "labels.yaml").write_text("red cube: cube\n")
    spec["source"]["labels"] = "labels.yaml"
    report = run_build(load_spec(write_spec(tmp_path, spec)), tmp_path / "db", echo=lambda _: None)
    keys = {r["key"] for r in read_table(tmp_path / "db", DETECTIONS_TABLE, "image_id").to_pylist()}
    assert len(keys) == 2
    assert report.models.run == {"depth": 0, "grounding": 6, "segmentation": 6}, report.models


def test_the_annotated_camera_and_explain(tmp_path, depth_model):
    """An image entry's K is the camera of the model path too; `forge explain` says which tasks run."""
    from scene_data import make_dataset

    scenes = make_dataset(tmp_path / "data", "npy_m", count=3, camera="varied", intrinsics="K")
    source = {"kind": "annotations", "instances": "data/instances.json", "images": "data/images", "dataset": "renders"}
    path = write_spec(tmp_path, annotated_spec(source, depth_model))
    run_build(load_spec(path), tmp_path / "db", echo=lambda _: None)
    rows = read_table(tmp_path / "db").to_pylist()
    assert rows and {r["camera_source"] for r in rows} == {"annotation"} and {r["source_dataset"] for r in rows} == {"renders"}
    for row in rows:
        fx, fy, cx, cy = scenes[Path(row["image_uri"]).name].intrinsics
        assert (row["fx"], row["fy"], row["cx"], row["cy"]) == pytest.approx((fx, fy, cx, cy))
    result = CliRunner().invoke(main, ["explain", str(path)])
    assert result.exit_code == 0, result.output
    assert "models (depth), on the images" in result.output
    assert "detections: the annotations' boxes, put into the cache as they are (no model)" in result.output
    assert "EstimateDepth" in result.output and "DetectObjects" not in result.output


def _fails(args: list[str], *says: str) -> list[str]:
    result = CliRunner().invoke(main, args)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.exit_code == 2 and lines and "Traceback" not in result.output, result.output
    for text in says:
        assert any(text in line for line in lines), (text, lines)
    return lines


@pytest.mark.parametrize("fmt", ["coco", "openimages"])
def test_a_cut_or_non_utf8_annotation_file_is_one_line(tmp_path, depth_model, fmt):
    dataset, scenes = build_dataset(3, flags=False)
    source = write(dataset, scenes, tmp_path / "data", fmt)
    path = tmp_path / (source.get("instances") or source["boxes"])
    spec = write_spec(tmp_path, annotated_spec(source, depth_model))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 2 // 3])
    lines = _fails(["build", str(spec), "--db", str(tmp_path / "db")], "cut short")
    assert len(lines) == 1 and not (tmp_path / "db").exists()
    path.write_bytes(whole.replace(b"photo_001", b"ph\xf6to_001"))  # Latin-1, not UTF-8
    lines = _fails(["build", str(spec), "--db", str(tmp_path / "db")], "not UTF-8")
    assert len(lines) == 1 and not (tmp_path / "db").exists()


def test_boxes_outside_their_images_are_one_line_each(tmp_path, depth_model):
    dataset, scenes = build_dataset(3, flags=False)
    source = write(dataset, scenes, tmp_path / "coco", "coco")
    coco = json.loads((tmp_path / "coco" / "instances.json").read_text())
    coco["annotations"][0]["bbox"] = [300, 10, 60, 20]  # reaches x = 360 in a 320-wide picture
    coco["annotations"][3]["bbox"] = [10, -30, 20, 20]
    (tmp_path / "coco" / "instances.json").write_text(json.dumps(coco))
    lines = _fails(["build", str(write_spec(tmp_path, annotated_spec(source, depth_model))), "--db", str(tmp_path / "db")],
                   "annotations[0].bbox: [300, 10, 60, 20] reaches outside its 320x240 image",
                   "annotations[3].bbox: [10, -30, 20, 20] reaches outside its 320x240 image")
    assert len(lines) == 2
    source = write(dataset, scenes, tmp_path / "oi", "openimages")
    rows = (tmp_path / "oi" / "boxes.csv").read_text().splitlines()
    fields = rows[2].split(",")
    fields[5] = "1.25"  # XMax past the right edge
    rows[2] = ",".join(fields)
    (tmp_path / "oi" / "boxes.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "oi_spec").mkdir()
    spec = annotated_spec({k: v.replace("oi/", "../oi/") for k, v in source.items()}, depth_model)
    lines = _fails(["build", str(write_spec(tmp_path / "oi_spec", spec)), "--db", str(tmp_path / "db")],
                   "boxes.csv: row 2: box XMin=")
    assert len(lines) == 1 and "is not inside its image" in lines[0]


def test_label_hygiene_names_maps_and_shipped_exclusions(tmp_path, depth_model):
    """Names as datasets ship them, a label map that renames, merges and drops, a shipped exclusion list;
    a map naming labels the dataset lacks is refused by `forge validate` (and by a build)."""
    from forge.sources.annotated import labels_of, names_of, spelled

    raw = {"1": "bus_(vehicle)", "2": "bat_(animal)", "3": "bat_(baseball)", "4": "Person", "5": "Cabinet/shelf",
           "6": "Human face", "7": "Man", "8": "Woman", "9": "Other Shoes"}
    assert names_of(raw) == {"1": "bus", "2": "bat (animal)", "3": "bat (baseball)", "4": "person", "5": "cabinet",
                             "6": "human face", "7": "man", "8": "woman", "9": "other shoes"}
    rules = {"map": {"man": "person", "woman": "person", spelled("Cabinet/shelf"): "shelf", "bat (animal)": None},
             "exclude": ["human face", "other shoes"]}
    assert labels_of(raw, rules) == {"1": "bus", "2": None, "3": "bat (baseball)", "4": "person", "5": "shelf",
                                     "6": None, "7": "person", "8": "person", "9": None}
    shipped = Path(__file__).resolve().parent.parent / "forge" / "vocabularies" / "exclude"
    assert {p.stem for p in shipped.glob("*.txt")} == {"coco", "lvis", "objects365", "openimages"}
    # a build: one label merged into another, one excluded by the shipped Open Images list
    dataset, scenes = build_dataset(8, flags=False)
    first, second = dataset.labels()[:2]
    for box in dataset.pictures[1].boxes[:1]:
        box.label = "human face"
    source = write(dataset, scenes, tmp_path / "data", "openimages")
    (tmp_path / "labels.yaml").write_text(f"{second.capitalize()}: {first}\n")
    source.update(labels="labels.yaml", exclude="openimages", dataset="oi-v7")
    spec = write_spec(tmp_path, annotated_spec(source, depth_model))
    lines: list[str] = []
    run_build(load_spec(spec), tmp_path / "db", echo=lines.append)
    rows = read_table(tmp_path / "db").to_pylist()
    labels = {o["label"] for r in rows for o in r["objects"]}
    assert first in labels and second not in labels and "human face" not in labels
    assert {r["source_dataset"] for r in rows} == {"oi-v7"}
    assert any("1 boxes of dropped or excluded labels left out" in line for line in lines), lines
    (tmp_path / "labels.yaml").write_text(f"{second}: {first}\nUnicorn: horse\nGriffin: null\n")
    lines = _fails(["validate", str(spec)], "source.labels:", "'griffin', 'unicorn'")
    assert len(lines) == 1
    _fails(["build", str(spec), "--db", str(tmp_path / "db2")], "names labels the dataset does not have")
