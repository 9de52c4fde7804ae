"""Exports load and train as they are: each format is read back with its consumer's own loading
logic (re-implemented here in a few lines, citing the code it follows), on a table that mixes
synthetic scenes with photos as people have them: EXIF-rotated JPEGs, WebP, TIFF and PNG."""

from __future__ import annotations

import base64
import io
import json
import os
import re

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image, ImageOps

from conftest import REPO, demo_dict, write_spec
from forge.cli import main
from forge.perception.synthetic_scene import render_scene
from forge.query import run_query
from helpers import models_spec
from tiny_models import save_tiny_depth, save_tiny_owlvit

ROTATED = "p1.jpg"


def _families(*names: str) -> list[dict]:
    return [f for name in names for f in yaml.safe_load((REPO / "specs" / "families" / f"{name}.yaml").read_text())["families"]]


def _photos(folder) -> None:
    """Five photos: a plain JPEG, a JPEG stored sideways with EXIF orientation 6, WebP, TIFF and PNG."""
    folder.mkdir()
    pictures = [Image.fromarray(render_scene(5, i, 200, 150, 3, 5).rgb) for i in range(5)]
    pictures[0].save(folder / "p0.jpg", quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed after rotating 90° clockwise
    pictures[1].transpose(Image.Transpose.ROTATE_90).save(folder / ROTATED, quality=92, exif=exif)
    pictures[2].save(folder / "p2.webp")
    pictures[3].save(folder / "p3.tiff")
    pictures[4].save(folder / "p4.png")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    synthetic = demo_dict(images=30)
    synthetic["families"] += _families("grounding", "referring")
    assert CliRunner().invoke(main, ["build", str(write_spec(root, synthetic)), "--db", str(root / "db")]).exit_code == 0
    _photos(root / "photos")
    spec = models_spec(str(save_tiny_depth(root / "depth")), str(save_tiny_owlvit(root / "owl")))
    spec["name"] = "photos"
    spec["families"] = _families("layout", "grounding")
    for family in spec["families"]:
        family["min_margin"] = 0.0
        family["balance"] = {"by": "none"}
    spec["verify"]["min_score"] = 0.0
    result = CliRunner().invoke(main, ["build", str(write_spec(root, spec, "photos.yaml")), "--db", str(root / "db")])
    assert result.exit_code == 0, result.output
    return root / "db"


def _export(db, out, *args: str) -> str:
    result = CliRunner().invoke(main, ["sample", "--db", str(db), "--n", "400", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return result.output


def _rows(db) -> dict[str, dict]:
    return {r["qa_id"]: r for r in run_query(db, "SELECT * FROM qa").to_pylist()}


@pytest.fixture(scope="module")
def exports(db, tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    for fmt in ("llava", "sharegpt", "openai", "qwen", "qwen2.5", "webdataset", "parquet", "jsonl"):
        _export(db, root / fmt, "--format", fmt)
    return root


def test_export_check_reads_every_format_back(exports):
    """Each format's own files, read back as its trainer reads them, pass on photos of every kind."""
    for fmt in ("llava", "sharegpt", "openai", "qwen", "qwen2.5", "webdataset", "parquet", "jsonl"):
        result = CliRunner().invoke(main, ["export-check", str(exports / fmt)])
        assert result.exit_code == 0 and ": ok (" in result.output, (fmt, result.output)


def test_every_family_and_every_kind_of_image_is_sampled(db, exports):
    index = [json.loads(line) for line in (exports / "llava" / "forge_index.jsonl").read_text().splitlines()]
    families = {r["family"] for r in run_query(db, "SELECT DISTINCT family FROM qa").to_pylist()}
    assert {row["family"] for row in index} == families  # --n alone: every family
    uris = {r["image_uri"].rsplit("/", 1)[-1] for r in _rows(db).values() if not r["image_uri"].startswith("synthetic")}
    assert {"p0.jpg", ROTATED, "p2.webp", "p3.tiff", "p4.png"} <= uris
    assert {os.path.splitext(row["image"])[1] for row in index} == {".png", ".jpg"}


def test_llava_export_loads_with_llavas_dataset_code(db, exports):
    """LLaVA 1.5, llava/train/train.py, LazySupervisedDataset.__getitem__: Image.open(os.path.join(
    image_folder, image_file)).convert('RGB'); preprocess_multimodal moves one <image> token to the start
    of the first human turn; conversations alternate human/gpt."""
    folder = exports / "llava"
    items = json.load(open(folder / "llava.json"))
    rows = _rows(db)
    for item in items:
        image = Image.open(os.path.join(folder, item["image"])).convert("RGB")
        assert image.size == (item["width"], item["height"])
        turns = item["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"]
        assert turns[0]["value"].startswith("<image>\n") and "<image>" not in turns[0]["value"][8:]
        row = rows[item["qa_id"]]
        assert turns[0]["value"][8:] == row["question"] and turns[1]["value"] == row["answer"]
        assert item["id"] == item["qa_id"] and item["family"] == row["family"] and item["split"] in ("train", "val", "test")
        assert not os.path.isabs(item["image"])


def test_exif_rotated_photos_are_exported_as_the_model_saw_them(db, exports):
    """The model perceived the photo upright: the export holds it upright, so its boxes and left/right
    answers fit the pixels a trainer opens (which do not apply EXIF)."""
    folder = exports / "llava"
    index = [json.loads(line) for line in (folder / "forge_index.jsonl").read_text().splitlines()]
    rows = _rows(db)
    rotated = [r for r in index if rows[r["qa_id"]]["image_uri"].endswith(ROTATED)]
    assert rotated
    original = ImageOps.exif_transpose(Image.open(db.parent / "photos" / ROTATED)).convert("RGB")
    exported = Image.open(folder / rotated[0]["image"])
    assert Image.open(db.parent / "photos" / ROTATED).size == (150, 200)  # stored sideways
    assert exported.size == original.size == (200, 150) and (rotated[0]["width"], rotated[0]["height"]) == (200, 150)
    assert exported.getexif().get(0x0112, 1) == 1
    difference = np.abs(np.asarray(exported.convert("L"), float) - np.asarray(original.convert("L"), float)).mean()
    assert difference < 8  # the same picture (JPEG re-encoding aside), not the raw sideways one
    result = CliRunner().invoke(main, ["export-check", str(folder)])
    assert result.exit_code == 0 and "ok" in result.output, result.output


def test_sharegpt_export_loads_with_llama_factory_logic(exports):
    """LLaMA-Factory (src/llamafactory/data/converter.py SharegptDatasetConverter, mm_plugin.py
    _validate_input): dataset_info.json names the file and columns; images resolve against the dataset
    folder; roles alternate user/assistant; the <image> tokens equal the images in number."""
    folder = exports / "sharegpt"
    info = json.load(open(folder / "dataset_info.json"))
    [(name, entry)] = info.items()
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages", "images": "images"}
    tags = entry["tags"]
    for item in json.load(open(folder / entry["file_name"])):
        messages = item[entry["columns"]["messages"]]
        roles = [m[tags["role_tag"]] for m in messages]
        assert roles == [tags["user_tag"], tags["assistant_tag"]] * (len(roles) // 2)
        images = [os.path.join(folder, path) for path in item[entry["columns"]["images"]]]
        assert all(os.path.isfile(path) for path in images)
        tokens = sum(m[tags["content_tag"]].count("<image>") for m in messages)
        assert tokens == len(images) == 1
        Image.open(images[0]).convert("RGB")


def test_openai_export_has_inline_images_and_meta_lines(exports):
    folder = exports / "openai"
    lines = (folder / "openai.jsonl").read_text().splitlines()
    metas = (folder / "openai_meta.jsonl").read_text().splitlines()
    assert len(lines) == len(metas) > 0
    for line, meta in zip(lines, metas):
        item, meta = json.loads(line), json.loads(meta)
        assert set(item) == {"messages"}
        user, assistant = item["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant" and isinstance(assistant["content"], str)
        [image_part] = [p for p in user["content"] if p["type"] == "image_url"]
        header, data = image_part["image_url"]["url"].split(",", 1)
        assert re.fullmatch(r"data:image/(jpeg|png);base64", header)
        assert Image.open(io.BytesIO(base64.b64decode(data))).size == (meta["width"], meta["height"])


def test_openai_export_can_reference_images_by_path(db, tmp_path):
    _export(db, tmp_path / "paths", "--format", "openai", "--openai-images", "path", "--quota", "left_right=5")
    for line in (tmp_path / "paths" / "openai.jsonl").read_text().splitlines():
        [part] = [p for p in json.loads(line)["messages"][0]["content"] if p["type"] == "image_url"]
        assert (tmp_path / "paths" / part["image_url"]["url"]).is_file()


def test_qwen_export_uses_qwen_vl_grounding_notation(db, exports):
    """Qwen-VL (finetune.py, README "Finetuning"): "Picture 1: <img>path</img>\\n" opens the first user
    turn; boxes are <ref>label</ref><box>(x1,y1),(x2,y2)</box> on [0, 1000)."""
    folder = exports / "qwen"
    rows = _rows(db)
    kinds = set()
    for item in json.load(open(folder / "qwen.json")):
        user, assistant = item["conversations"]
        path = re.match(r"Picture 1: <img>(.+?)</img>\n", user["value"]).group(1)
        assert os.path.isfile(folder / path)
        row = rows[item["qa_id"]]
        numbers = [int(n) for n in re.findall(r"\d+", re.sub(r"<img>.*?</img>", "", user["value"] + assistant["value"]))
                   if row["answer_type"] in ("box", "point") or "<box>" in user["value"]]
        assert all(n <= 999 for n in numbers)
        if row["answer_type"] == "box":
            label = row["objects"][0]["label"]
            match = re.fullmatch(rf"<ref>{re.escape(label)}</ref><box>\((\d+),(\d+)\),\((\d+),(\d+)\)</box>", assistant["value"])
            assert match, assistant["value"]
            expected = [min(round(v * 1000), 999) for v in row["objects"][0]["box"]]
            assert [int(v) for v in match.groups()] == expected
            assert "<box>" in user["value"]  # the prompt names the notation of the answer
            kinds.add("box")
        if row["family"] == "referring" and "(x" not in row["question"] and re.search(r"\(\d+,\d+,\d+,\d+\)", row["question"]):
            assert re.search(r"<box>\(\d+,\d+\),\(\d+,\d+\)</box>", user["value"])  # no plain 4-tuples
            kinds.add("referring")
    assert kinds == {"box", "referring"}


def test_qwen25_export_answers_boxes_in_pixels_as_json(db, exports):
    """Qwen2.5-VL (qwen-vl-finetune, qwenvl/data/data_processor.py and tools/process_bbox.ipynb): {image,
    conversations: [{from: human, value: "<image>\\n..."}, {from: gpt}]}; grounding answers are JSON
    [{"bbox_2d": [x1, y1, x2, y2], "label"}] in pixels of the image as the processor resized it."""
    from transformers import Qwen2VLImageProcessorPil

    folder = exports / "qwen2.5"
    rows = _rows(db)
    boxes = 0
    processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 16, max_pixels=28 * 28 * 576)  # qwen-vl-finetune's defaults
    for item in json.load(open(folder / "qwen2_5.json")):
        image = Image.open(folder / item["image"]).convert("RGB")
        assert image.size == (item["width"], item["height"])
        _, grid_h, grid_w = processor(images=[image], return_tensors="pt")["image_grid_thw"][0].tolist()
        width, height = grid_w * 14, grid_h * 14  # the image the model sees, in 14-px patches
        assert (item["input_width"], item["input_height"]) == (width, height)
        human, gpt = item["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<image>\n") and gpt["from"] == "gpt"
        row = rows[item["qa_id"]]
        if row["answer_type"] == "box":
            [answer] = json.loads(gpt["value"])
            x1, y1, x2, y2 = answer["bbox_2d"]
            assert answer["label"] == row["objects"][0]["label"]
            assert 0 <= x1 < x2 < width and 0 <= y1 < y2 < height
            b = row["objects"][0]["box"]
            assert abs(x1 - b[0] * width) <= 0.5 and abs(y2 - min(b[3] * height, height - 1)) <= 0.5
            boxes += 1
    assert boxes > 0


def test_webdataset_export_has_one_sample_per_image_and_re_exports_cleanly(db, exports, tmp_path):
    import webdataset as wds

    folder = exports / "webdataset"
    shards = sorted(str(p) for p in folder.glob("shard-*.tar"))
    index = [json.loads(line) for line in (folder / "forge_index.jsonl").read_text().splitlines()]
    samples = list(wds.WebDataset(shards, shardshuffle=False).decode("pil").to_tuple("jpg;png", "json"))
    assert len(samples) == len({row["image_id"] for row in index})
    assert sum(len(record["qa"]) for _, record in samples) == len(index)
    for image, record in samples:
        assert image.size == (record["width"], record["height"])
        assert {row["image_id"] for row in record["qa"]} == {record["image_id"]}
    import tarfile

    names = {name.split(".", 1)[1] for shard in shards for name in tarfile.open(shard).getnames()}
    assert names <= {"jpg", "png", "json"}
    (folder / "shard-000009.tar").write_bytes(b"stale")
    _export(db, folder, "--format", "webdataset", "--quota", "left_right=5")  # a smaller re-export
    assert sorted(p.name for p in folder.glob("shard-*.tar")) == ["shard-000000.tar"]
    again = list(wds.WebDataset(str(folder / "shard-000000.tar"), shardshuffle=False).decode("pil").to_tuple("jpg;png", "json"))
    assert sum(len(record["qa"]) for _, record in again) == 5


def test_parquet_export_loads_with_hugging_face_datasets(exports):
    import datasets

    path = str(exports / "parquet" / "data.parquet")
    for dataset in (datasets.load_dataset("parquet", data_files=path, split="train"), datasets.Dataset.from_parquet(path)):
        assert isinstance(dataset.features["image"], datasets.Image)
        first = dataset[0]
        assert isinstance(first["image"], Image.Image) and first["image"].size == (first["width"], first["height"])
        assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
        assert first["qa_id"] and first["family"] and first["split"] in ("train", "val", "test")


def test_multi_turn_groups_questions_about_one_image(db, tmp_path):
    _export(db, tmp_path / "turns", "--format", "llava", "--turns", "3")
    items = json.load(open(tmp_path / "turns" / "llava.json"))
    index = [json.loads(line) for line in (tmp_path / "turns" / "forge_index.jsonl").read_text().splitlines()]
    assert max(len(i["conversations"]) for i in items) == 6 and all(len(i["conversations"]) <= 6 for i in items)
    assert sum(len(i["qa_id"]) for i in items) == len(index) > 100
    rows = _rows(db)
    for item in items:
        assert len({rows[q]["image_id"] for q in item["qa_id"]}) == 1
        humans = [t["value"] for t in item["conversations"] if t["from"] == "human"]
        assert humans[0].startswith("<image>\n") and not any("<image>" in h for h in humans[1:])
    assert CliRunner().invoke(main, ["export-check", str(tmp_path / "turns")]).exit_code == 0  # every turn's answer
    result = CliRunner().invoke(main, ["sample", "--db", str(db), "--n", "5", "--format", "webdataset", "--turns", "2",
                                       "--out", str(tmp_path / "w")])
    assert result.exit_code == 2 and "holds every question of an image already" in result.stderr


def test_image_modes_link_and_none(db, tmp_path):
    _export(db, tmp_path / "linked", "--format", "llava", "--images", "link")
    files = list((tmp_path / "linked" / "images").iterdir())
    links = [f for f in files if f.is_symlink()]
    assert links and all(f.suffix in (".jpg", ".png") for f in files)
    assert not any(os.path.realpath(f).endswith((".webp", ".tiff", ROTATED)) for f in links)  # converted: written
    for where, refusal in (("image_uri LIKE 'synthetic://%'", "cannot reference synthetic://"),
                           (f"image_uri LIKE '%{ROTATED}'", "it needs converting (EXIF rotation)")):
        result = CliRunner().invoke(main, ["sample", "--db", str(db), "--n", "50", "--where", where, "--images", "none",
                                           "--out", str(tmp_path / "n")])
        [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.exit_code == 2 and refusal in error, error
    photos = db.parent / "photos"
    result = CliRunner().invoke(main, ["sample", "--db", str(db), "--n", "30", "--where", "image_uri LIKE '%p0.jpg'",
                                       "--images", "none", "--image-root", str(photos), "--out", str(tmp_path / "none")])
    assert result.exit_code == 0, result.output
    items = json.load(open(tmp_path / "none" / "llava.json"))
    assert items and {i["image"] for i in items} == {"p0.jpg"} and not (tmp_path / "none" / "images").exists()
    assert CliRunner().invoke(main, ["export-check", str(tmp_path / "none")]).exit_code == 0


def test_dry_run_prints_the_mixture_and_writes_nothing(db, tmp_path):
    result = CliRunner().invoke(main, ["sample", "--db", str(db), "--n", "100", "--dry-run"])
    assert result.exit_code == 0, result.output
    mixture, cells = (block.splitlines() for block in result.stdout.split("\n\n"))
    assert mixture[0].split()[:3] == ["family", "rows", "train"]
    families = {r["family"] for r in run_query(db, "SELECT DISTINCT family FROM qa").to_pylist()}
    assert {line.split()[0] for line in mixture[1:]} == families
    assert sum(int(line.split()[1]) for line in mixture[1:]) == 100
    # then per cell (here one per family): family, cell, rows in it, quota, what a real run takes
    assert cells[0].split() == ["family", "cell", "rows", "quota", "takes"]
    takes = {line.split()[0]: int(line.split()[4]) for line in cells[1:]}
    assert takes == {line.split()[0]: int(line.split()[1]) for line in mixture[1:]}
    assert not list(tmp_path.iterdir())


def test_export_check_finds_what_a_trainer_would_get_wrong(db, tmp_path):
    folder = tmp_path / "broken"
    _export(db, folder, "--format", "llava")
    index = [json.loads(line) for line in (folder / "forge_index.jsonl").read_text().splitlines()]
    victim = next(r for r in index if r["family"] == "left_right")
    Image.new("RGB", (10, 10)).save(folder / victim["image"])
    flipped = next(r for r in index if r["family"] == "left_right" and r["image"] != victim["image"]
                   and r["answer"] in ("left", "right"))  # phrasing depends on the spec hash, so on the models' folder
    flipped["answer"] = "left" if flipped["answer"] == "right" else "right"
    (folder / "forge_index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in index))
    result = CliRunner().invoke(main, ["export-check", str(folder)])
    assert result.exit_code == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 3 and "3 problems" in result.stderr.splitlines()[-1], result.stderr
    assert any(f"image {victim['image']} is 10x10" in line and line.startswith("problem: llava.json: sample ")
               for line in problems)
    # the index now disagrees with its own boxes, and llava.json (untouched) with the index
    assert f"problem: forge_index.jsonl: qa {flipped['qa_id']}: answers {flipped['answer']!r} but the boxes say" in result.stderr
    assert f"(qa {flipped['qa_id']}): answers {'left' if flipped['answer'] == 'right' else 'right'!r}; the index says" in result.stderr


def test_an_export_moves_and_re_exports_cleanly(db, tmp_path):
    """Paths stay relative through a symlinked --out; a moved export still checks; a copy export over an
    earlier linked one replaces its links with files."""
    (tmp_path / "real").mkdir()
    (tmp_path / "via").symlink_to(tmp_path / "real")
    _export(db, tmp_path / "via" / "exp", "--format", "llava", "--images", "link", "--quota", "left_right=20")
    _export(db, tmp_path / "via" / "exp", "--format", "llava", "--quota", "left_right=20")
    items = json.load(open(tmp_path / "real" / "exp" / "llava.json"))
    assert all(re.fullmatch(r"images/[0-9a-f]+\.(png|jpg)", i["image"]) for i in items)
    assert not any(p.is_symlink() for p in (tmp_path / "real" / "exp" / "images").iterdir())
    (tmp_path / "real" / "exp").rename(tmp_path / "moved")
    result = CliRunner().invoke(main, ["export-check", str(tmp_path / "moved")])
    assert result.exit_code == 0 and "ok (20 rows" in result.output, result.output
