"""A corpus of hostile inputs (issue 22): each is one clear line and an exit code, never a traceback, and
the table is unchanged or holds exactly the good rows. Specs and mix files that would exhaust the parser,
COCO content that would silently change rows, crowds of boxes, broken staging, a full or read-only disk.
(Broken images: tests/test_bad_images.py; queries and exports have their own hostile cases.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from conftest import REPO, demo_dict, read_table, write_spec
from forge.cli import main
from scene_data import make_dataset, use_annotations

QUIET_DEMO = demo_dict(images=6)


def _fails_in_one_line(args: list[str], code: int = 2, says: str = "") -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error")]  # not progress labels
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    assert says in lines[0], lines[0]
    return lines[0]


# ---- specs --------------------------------------------------------------------------------------------

def _spec_text(**families) -> str:
    spec = demo_dict(images=4)
    spec["families"][0].update(families)
    return yaml.safe_dump(spec, sort_keys=False)


SPECS = {
    "8000-term holds": (lambda: _spec_text(relation={"holds": " OR ".join(f"a_depth > {i}" for i in range(8000)),
                                                     "margin": "1"}), "expressions are limited to 2000"),
    "1500-term holds": (lambda: _spec_text(relation={"holds": " OR ".join(f"a_x1 > {i}" for i in range(1500)),
                                                     "margin": "1"}), "expressions are limited to 2000"),
    "deep parentheses": (lambda: _spec_text(relation={"holds": "(" * 40 + "a_depth > 1" + ")" * 40, "margin": "1"}),
                         "nests parentheses 40 deep"),
    "deeply nested YAML": (lambda: "version: 1\nname: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 32 levels"),
    "empty vocabulary word": (lambda: _vocabulary('[""]'), "vocabulary[0]: String should have at least 1 character"),
    "numeric vocabulary word": (lambda: _vocabulary("[1]"), "vocabulary[0]: Input should be a valid string, got 1"),
    "null vocabulary word": (lambda: _vocabulary("[null]"), "vocabulary[0]: Input should be a valid string, got None"),
    "not UTF-8": (lambda: b"version: 1\nname: \xff\xfe\n", "is not UTF-8 text"),
}


def _vocabulary(words: str) -> str:
    spec = demo_dict()
    spec.update(source={"kind": "images", "path": "."},
                perception={"kind": "models", "depth": {"model": "x"}, "grounding": {"model": "y", "vocabulary": ["z"]}})
    return yaml.safe_dump(spec, sort_keys=False).replace("- z", words).replace("vocabulary:\n", "vocabulary: ")


@pytest.mark.parametrize("case", sorted(SPECS))
def test_hostile_specs_are_one_line(tmp_path, case):
    make, says = SPECS[case]
    text = make()
    path = tmp_path / "spec.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    started = time.perf_counter()
    _fails_in_one_line(["validate", str(path)], says=says)
    assert time.perf_counter() - started < 10


# ---- mix files ----------------------------------------------------------------------------------------

BILLION_LAUGHS = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
                  + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)))
MIXES = {
    "billion laughs": (BILLION_LAUGHS, "YAML anchors and aliases (&, *) are not allowed in a mix file"),
    "families as a list": ("families: [depth_order, left_right]\n", "families: Input should be a valid dictionary"),
    "quota of many": ("quotas: {depth_order: many}\n", "quotas.depth_order: Input should be a valid integer"),
    "n: ten": ("n: ten\n", "n: Input should be a valid integer"),
    "n: -5": ("n: -5\n", "n: Input should be greater than or equal to 1"),
    "split share x": ("splits: {train: x}\n", "splits.train: Input should be a valid number"),
    "stratify: 5": ("stratify: 5\n", "stratify: Input should be a valid list"),
    "top-level list": ("- n: 5\n", "a mix file is a YAML mapping"),
    "unknown key": ("sample_size: 5\n", "sample_size: unknown key"),
    "deep nesting": ("n: " + "[" * 100 + "]" * 100 + "\n", "nested more than 32 levels"),
}


@pytest.mark.parametrize("case", sorted(MIXES))
def test_hostile_mix_files_are_one_line(demo_db, tmp_path, case):
    text, says = MIXES[case]
    (tmp_path / "mix.yaml").write_text(text)
    started = time.perf_counter()
    _fails_in_one_line(["sample", "--db", str(demo_db), "--mix", str(tmp_path / "mix.yaml"), "--dry-run"], says=says)
    assert time.perf_counter() - started < 10


# ---- COCO content -------------------------------------------------------------------------------------

def _coco(tmp_path: Path, change) -> Path:
    make_dataset(tmp_path / "data", "npy_m", count=3, masks=True)
    path = tmp_path / "data" / "instances.json"
    coco = json.loads(path.read_text())
    change(coco)
    path.write_text(json.dumps(coco))
    return write_spec(tmp_path, use_annotations(QUIET_DEMO, "npy_m"))


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(coco):
        target = coco
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


COCO_CASES = {
    "empty category name": (_set("categories", 0, "name", ""), "categories[0].name: is empty"),
    "garbage compressed RLE": (_set("annotations", 0, "segmentation", "counts", "~~~garbage~~~"),
                               "annotations[0].segmentation: compressed RLE counts do not decode"),
    "numeric RLE counts": (_set("annotations", 0, "segmentation", "counts", 5),
                           "RLE counts must be a list of runs or a compressed string"),
    "RLE of another size": (_set("annotations", 0, "segmentation", "size", [480, 640]),
                            "RLE size [480, 640] is not the image's [height, width] = [240, 320]"),
    "segmentation text": (_set("annotations", 0, "segmentation", "abc"), "must be polygons"),
    "RLE run of 10^12": (_set("annotations", 0, "segmentation", {"size": [240, 320], "counts": [0, 10**12]}),
                         "adding up to the image's 76800 pixels"),
    "bbox width 10^400": (_set("annotations", 0, "bbox", [1, 2, 10**400, 5]),
                          "integer overflow"),
}


@pytest.mark.parametrize("case", sorted(COCO_CASES))
def test_hostile_coco_content_is_one_line_and_writes_nothing(tmp_path, case):
    change, says = COCO_CASES[case]
    spec = _coco(tmp_path, change)
    _fails_in_one_line(["build", str(spec), "--db", str(tmp_path / "db")], says=says)
    assert not (tmp_path / "db").exists()


def test_an_instances_file_nested_100000_deep_is_one_line(tmp_path):
    spec = _coco(tmp_path, lambda coco: None)
    (tmp_path / "data" / "instances.json").write_text("[" * 100_000 + "]" * 100_000)
    _fails_in_one_line(["build", str(spec), "--db", str(tmp_path / "db")], says="nested more than 32 deep")


def test_depth_maps_follow_the_images_relative_path_and_colliding_stems_are_not_guessed(tmp_path):
    """`images/x/scene.png` and `images/y/scene.png` read `depth/x/scene.npy` and `depth/y/scene.npy`; a flat
    depth folder serves only stems no other image shares; a 0x0 map and a link out of the images folder
    are errors rows."""
    make_dataset(tmp_path / "data", "npy_m", count=6, masks=True)
    data = tmp_path / "data"
    coco = json.loads((data / "instances.json").read_text())
    for i, entry in enumerate(coco["images"][:4]):  # scene_000, 001 -> x/scene.png, y/scene.png; 002, 003 -> flat pair
        folder = "xy"[i % 2] if i < 2 else "zw"[i % 2]
        (data / "images" / folder).mkdir(exist_ok=True)
        (data / "images" / entry["file_name"]).rename(data / "images" / folder / "scene.png")
        depth = data / "depth" / entry["file_name"].replace(".png", ".npy")
        if i < 2:
            (data / "depth" / folder).mkdir(exist_ok=True)
            depth.rename(data / "depth" / folder / "scene.npy")
        else:
            depth.rename(data / "depth" / f"pair{i}.npy")  # z/scene and w/scene have no map of their own
        entry["file_name"] = f"{folder}/scene.png"
    (data / "depth" / "scene.npy").write_bytes((data / "depth" / "x" / "scene.npy").read_bytes())  # a stem both share
    np.save(data / "depth" / "scene_004.npy", np.zeros((0, 0), np.float32))
    (data / "images" / "scene_005.png").unlink()
    (data / "images" / "scene_005.png").symlink_to(REPO / "docs" / "preview_depth_order.png")
    (data / "instances.json").write_text(json.dumps(coco))
    from forge.build import run_build
    from forge.spec.load import load_spec

    report = run_build(load_spec(write_spec(tmp_path, use_annotations(QUIET_DEMO, "npy_m"))), tmp_path / "db",
                       echo=lambda _: None)
    assert report.skipped.total == 4, report.skipped.counts
    reasons = " | ".join(r["reason"] for r in read_table(tmp_path / "db", "errors", "image_uri").to_pylist())
    assert "depth/z/scene.npy" in reasons and "depth/w/scene.npy" in reasons  # not the flat scene.npy both share
    assert "scene_004.npy has shape (0, 0)" in reasons and "links outside the images folder" in reasons
    asked = {r["image_uri"].split("images/")[1] for r in read_table(tmp_path / "db").to_pylist()}
    assert {"x/scene.png", "y/scene.png"} <= asked and not asked & {"z/scene.png", "w/scene.png", "scene_004.png",
                                                                  "scene_005.png"}


# ---- crowds of boxes ----------------------------------------------------------------------------------

def test_two_thousand_boxes_on_one_image_finish_in_seconds_and_are_capped_in_the_summary(tmp_path):
    from forge.perception.depth_stats import MAX_OBJECTS

    rng = np.random.default_rng(0)

    def crowd(coco):
        image_id, category = coco["images"][0]["id"], coco["annotations"][0]["category_id"]
        for k in range(2000):
            x, y = rng.uniform(0, 300), rng.uniform(0, 220)
            coco["annotations"].append({"id": 10_000 + k, "image_id": image_id, "category_id": category,
                                        "bbox": [x, y, rng.uniform(2, 20), rng.uniform(2, 20)], "score": rng.uniform(0.5, 1)})
    spec = yaml.safe_load(_coco(tmp_path, crowd).read_text())
    spec["families"] += yaml.safe_load((REPO / "specs" / "families" / "counting.yaml").read_text())["families"]
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["build", str(write_spec(tmp_path, spec)), "--db", str(tmp_path / "db")])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started < 60
    assert f"more left out: images with over {MAX_OBJECTS} objects keep their best scored" in result.stdout
    counting = result.stdout[result.stdout.index("counting:"):]
    assert int(counting.split("object_cap")[1].split()[0]) >= 1  # the crowded image's counts are not asked


# ---- staging ------------------------------------------------------------------------------------------

STAGED, CHUNK = demo_dict(images=16), 4


def _killed_staging(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A demo build whose first pass finished and whose run then died: its staging folder is left."""
    import forge.build as build
    from forge.spec.load import load_spec

    spec = write_spec(tmp_path, STAGED)
    counting_only = build.run_pass

    def dies_after_counting(plan, kind, *args, **kwargs):
        if kind != build.COUNT:
            raise KeyboardInterrupt
        return counting_only(plan, kind, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(build, "run_pass", dies_after_counting)
        with pytest.raises(KeyboardInterrupt):
            build.run_build(load_spec(spec), tmp_path / "db", echo=lambda _: None, chunk_size=CHUNK)
    return spec, tmp_path / "db"


@pytest.fixture(scope="module")
def clean_staged(tmp_path_factory) -> Path:
    """The table a whole, uninterrupted build of `STAGED` makes."""
    folder = tmp_path_factory.mktemp("clean")
    assert CliRunner().invoke(main, ["build", str(write_spec(folder, STAGED)), "--db", str(folder / "db"),
                                     "--chunk-size", str(CHUNK)]).exit_code == 0
    return folder / "db"


def _staged_file(db: Path, pattern: str) -> Path:
    return next(p for p in sorted((db / ".forge-staging").rglob(pattern)) if not p.name.endswith(".b2"))


@pytest.mark.parametrize("damage", ["truncated records", "swapped records", "truncated duplicates", "edited counts"])
def test_damaged_staging_stops_a_resume_in_one_line_and_no_resume_starts_over(tmp_path, monkeypatch, clean_staged, damage):
    spec, db = _killed_staging(tmp_path, monkeypatch)
    if damage == "truncated records":
        path = _staged_file(db, "records/000001.parquet")
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "swapped records":
        first, second = _staged_file(db, "records/000000.parquet"), _staged_file(db, "records/000001.parquet")
        data = first.read_bytes()
        first.write_bytes(second.read_bytes())
        second.write_bytes(data)
    elif damage == "truncated duplicates":
        path = _staged_file(db, "duplicates/000001.npy")
        path.write_bytes(path.read_bytes()[:20])
    else:
        path = _staged_file(db, "counted/000002.json")
        path.write_text(path.read_text().replace(f'"images": {CHUNK}', f'"images": {CHUNK + 1}'))
    chunked = ["--chunk-size", str(CHUNK)]
    _fails_in_one_line(["build", str(spec), "--db", str(db), *chunked], says="run the build again with --no-resume")
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(db), *chunked, "--no-resume"])
    assert result.exit_code == 0, result.output
    assert read_table(db).equals(read_table(clean_staged))


@pytest.mark.parametrize("no_resume", [False, True])
def test_a_corrupt_state_file_is_started_over(tmp_path, monkeypatch, no_resume):
    spec, db = _killed_staging(tmp_path, monkeypatch)
    _staged_file(db, "state.json").write_text("{not json")
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(db), "--chunk-size", str(CHUNK),
                                       *(["--no-resume"] if no_resume else [])])
    assert result.exit_code == 0, result.output
    assert "resumed" not in result.stdout


# ---- the machine --------------------------------------------------------------------------------------

def _mount(*args: str) -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None and \
        subprocess.run(["mount", *args], capture_output=True).returncode == 0


def test_a_read_only_database_and_a_full_disk_are_one_line(tmp_path):
    db = tmp_path / "db"
    spec = write_spec(tmp_path, QUIET_DEMO)
    assert CliRunner().invoke(main, ["build", str(spec), "--db", str(db)]).exit_code == 0
    before = read_table(db)
    read_only, full = tmp_path / "read_only", tmp_path / "full"
    read_only.mkdir()
    full.mkdir()
    if not (_mount("--bind", str(db), str(read_only)) and _mount("-o", "remount,ro,bind", str(read_only))):
        pytest.skip("needs root to mount a read-only folder and a small tmpfs")
    try:
        command = [sys.executable, "-m", "forge.cli", "build", str(spec), "--db", str(read_only), "--seed", "3"]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: the file system is read-only")
        assert read_table(db).equals(before)
        assert _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full))
        command = [sys.executable, "-m", "forge.cli", "build", str(spec), "--db", str(full / "db")]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: no space left on the device")
    finally:
        for folder in (read_only, full):
            subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_database_folder_deleted_mid_build_is_one_line(tmp_path):
    spec = write_spec(tmp_path, demo_dict(images=120))
    db = tmp_path / "db"
    process = subprocess.Popen([sys.executable, "-m", "forge.cli", "build", str(spec), "--db", str(db)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (db / ".forge-staging").exists():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.05)
    shutil.rmtree(db, ignore_errors=True)
    _, stderr = process.communicate(timeout=300)
    if process.returncode == 0:
        pytest.skip("the build recreated what it needed (it wrote after the folder was gone)")
    assert process.returncode == 1 and "Traceback" not in stderr, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("error: a file or folder vanished")
