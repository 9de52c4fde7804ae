"""Exports replaced whole (a re-export SIGKILLed half-way leaves the old one loadable), `forge
export-check` reading what each trainer reads (tampered files fail, one line per problem naming file
and sample), and the README's WebDataset snippet run from outside the export folder."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from conftest import REPO, demo_dict, write_spec
from forge.cli import main

FORMATS = ("llava", "sharegpt", "openai", "qwen", "qwen2.5", "webdataset", "parquet", "jsonl")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    """Synthetic scenes asked left/right, depth order, grounding (box and point answers) and referring."""
    root = tmp_path_factory.mktemp("robust")
    spec = demo_dict(images=12)
    spec["families"] += [family for name in ("grounding", "referring") for family in
                         yaml.safe_load((REPO / "specs" / "families" / f"{name}.yaml").read_text())["families"]]
    result = CliRunner().invoke(main, ["build", str(write_spec(root, spec)), "--db", str(root / "db")])
    assert result.exit_code == 0, result.output
    return root / "db"


def _export(db: Path, out: Path, fmt: str, *args: str) -> None:
    result = CliRunner().invoke(main, ["sample", "--db", str(db), "--n", "40", "--format", fmt, "--out", str(out), *args])
    assert result.exit_code == 0, result.output


def _check(folder: Path):
    return CliRunner().invoke(main, ["export-check", str(folder)])


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file of an export (links as their target) and a digest of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _forge_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".forge-export" in p.name or p.name.endswith(".part"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_re_export_replaces_the_folder_whole_and_leaves_nothing_temporary(db, tmp_path, fmt):
    out = tmp_path / "exports" / "exp"
    _export(db, out, fmt)
    (out / "shard-000009.tar").write_bytes(b"stale")  # a file the new export does not write
    _export(db, out, fmt, "--quota", "left_right=5", "--quota", "grounding=5")
    _export(db, tmp_path / "fresh", fmt, "--quota", "left_right=5", "--quota", "grounding=5")
    assert _snapshot(out) == _snapshot(tmp_path / "fresh")  # nothing of the earlier export is left in it
    assert os.listdir(tmp_path / "exports") == ["exp"] and not _forge_leftovers(out)
    assert not any(p.name.startswith(".") or p.suffix == ".part" for p in out.rglob("*"))
    result = _check(out)
    assert result.exit_code == 0 and "ok (10 rows" in result.output, result.output


def test_an_export_refuses_a_folder_that_is_not_an_export(db, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["sample", "--db", str(db), "--n", "5", "--out", str(tmp_path / "mine")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "holds files but no export.json" in result.stderr
    assert os.listdir(tmp_path / "mine") == ["notes.txt"] and sorted(os.listdir(tmp_path)) == ["mine"]


def _kill_mid_export(db: Path, out: Path, fmt: str, fifo: Path) -> None:
    """Re-export into `out` in a subprocess whose last image is a named pipe: the export blocks reading it,
    every other image already written; SIGKILL it there."""
    os.mkfifo(fifo)
    sql = (f"SELECT * REPLACE (CASE WHEN image_id = (SELECT max(image_id) FROM qa) THEN '{fifo}' ELSE image_uri END "
           "AS image_uri) FROM qa ORDER BY image_id")
    process = subprocess.Popen([sys.executable, "-m", "forge.cli", "query", sql, "--db", str(db), "--format", fmt,
                                "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # succeeds once the export is reading the pipe
            break
        except OSError as exc:
            assert exc.errno == errno.ENXIO
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the export never reached the pipe"
            time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    os.close(writer)
    assert process.returncode == -signal.SIGKILL


def _load_llava(folder: Path) -> int:
    """LLaVA 1.5's LazySupervisedDataset: json.load, then each image opened under the image folder."""
    items = json.load(open(folder / "llava.json"))
    for item in items:
        Image.open(os.path.join(folder, item["image"])).convert("RGB")
    return len(items)


def _load_webdataset(folder: Path) -> int:
    import webdataset as wds

    shards = [os.path.join(folder, name) for name in open(os.path.join(folder, "shards.txt")).read().split()]
    return sum(len(record["qa"]) for _, record in
               wds.WebDataset(shards, shardshuffle=False).decode("pil").to_tuple("jpg;png", "json"))


@pytest.mark.parametrize("fmt, load", [("webdataset", _load_webdataset), ("llava", _load_llava)])
def test_a_killed_re_export_leaves_the_old_export_whole(db, tmp_path, fmt, load):
    out = tmp_path / "exports" / "exp"
    _export(db, out, fmt, "--quota", "left_right=5")
    before = _snapshot(out)
    _kill_mid_export(db, out, fmt, tmp_path / "slow.png")
    [scratch] = [p for p in (tmp_path / "exports").iterdir() if p.name.startswith(".exp.forge-export-new-")]
    assert [p for p in scratch.rglob("*") if p.suffix == ".png"]  # killed half-way: images written, files not yet
    assert _snapshot(out) == before  # the old export, untouched
    assert load(out) == 5
    assert _check(out).exit_code == 0
    _export(db, out, fmt, "--quota", "left_right=7")  # the next export clears what the killed one left
    assert os.listdir(tmp_path / "exports") == ["exp"] and load(out) == 7


def test_an_export_killed_between_its_two_renames_gets_its_old_folder_back(db, tmp_path):
    """Killed after renaming the old export away and before renaming the new one in: the next export into
    the folder, even one that fails, first puts the old export back."""
    out = tmp_path / "exports" / "exp"
    _export(db, out, "llava", "--quota", "left_right=5")
    before = _snapshot(out)
    out.rename(tmp_path / "exports" / ".exp.forge-export-old-4242")
    shutil.copytree(tmp_path / "exports" / ".exp.forge-export-old-4242", tmp_path / "exports" / ".exp.forge-export-new-4242")
    result = CliRunner().invoke(main, ["sample", "--db", str(db), "--n", "5", "--images", "none", "--out", str(out)])
    assert result.exit_code == 2 and "--images none cannot reference synthetic://" in result.stderr  # refused half-way
    assert os.listdir(tmp_path / "exports") == ["exp"] and _snapshot(out) == before


def test_readme_webdataset_snippet_runs_from_outside_the_export(db, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(# WebDataset.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) == 1
    folder = re.search(r'folder = "(\w+)"', blocks[0]).group(1)
    _export(db, tmp_path / folder, "webdataset")
    monkeypatch.chdir(tmp_path)  # the export folder's parent, not the folder itself
    namespace: dict = {}
    exec(blocks[0], namespace)
    samples = list(namespace["samples"])
    index = (tmp_path / folder / "forge_index.jsonl").read_text().splitlines()
    assert sum(len(record["qa"]) for _, record in samples) == len(index) == 40
    assert all(image.size == (record["width"], record["height"]) for image, record in samples)


@pytest.fixture(scope="module")
def clean(db, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    for fmt in ("llava", "qwen2.5", "parquet", "webdataset"):
        _export(db, root / fmt, fmt, "--quota", "left_right=10", "--quota", "grounding=10")
    return root


def _flip_answer(folder: Path) -> str:
    items = json.load(open(folder / "llava.json"))
    number, item = next((n, i) for n, i in enumerate(items, 1) if i["conversations"][1]["value"] in ("left", "right"))
    item["conversations"][1]["value"] = {"left": "right", "right": "left"}[item["conversations"][1]["value"]]
    (folder / "llava.json").write_text(json.dumps(items))
    return f"llava.json: sample {number} (qa {item['qa_id']}): answers '{item['conversations'][1]['value']}'"


def _move_box(folder: Path) -> str:
    items = json.load(open(folder / "llava.json"))
    number, item = next((n, i) for n, i in enumerate(items, 1) if re.fullmatch(r"\(\d+,\d+,\d+,\d+\)", i["conversations"][1]["value"]))
    x1, y1, x2, y2 = (int(v) for v in re.findall(r"\d+", item["conversations"][1]["value"]))
    shift = -300 if x2 > 700 else 300  # 300 units of the [0, 1000] grid to the side, still inside the image
    item["conversations"][1]["value"] = f"({x1 + shift},{y1},{x2 + shift},{y2})"
    (folder / "llava.json").write_text(json.dumps(items))
    return f"llava.json: sample {number} (qa {item['qa_id']}): answers '({x1 + shift},"


def _move_pixels(folder: Path) -> str:
    items = json.load(open(folder / "qwen2_5.json"))
    number, item = next((n, i) for n, i in enumerate(items, 1) if "bbox_2d" in i["conversations"][1]["value"])
    [answer] = json.loads(item["conversations"][1]["value"])
    answer["bbox_2d"] = [answer["bbox_2d"][0], answer["bbox_2d"][1] + 300, answer["bbox_2d"][2], answer["bbox_2d"][3] + 300]
    item["conversations"][1]["value"] = json.dumps([answer])
    (folder / "qwen2_5.json").write_text(json.dumps(items))
    return f"qwen2_5.json: sample {number} (qa {item['qa_id']}): answers"


def _truncate_in_parquet(folder: Path) -> str:
    table = pq.read_table(folder / "data.parquet")
    rows = table.to_pylist()
    rows[3]["image"]["bytes"] = rows[3]["image"]["bytes"][: len(rows[3]["image"]["bytes"]) // 2]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), folder / "data.parquet")
    import datasets

    with pytest.raises(OSError):  # what a trainer would meet
        datasets.Dataset.from_parquet(str(folder / "data.parquet"), cache_dir=str(folder.parent / "hf"))[3]["image"]
    return "data.parquet: row 4: image does not open"


def _truncate_in_tar(folder: Path) -> str:
    shard = folder / "shard-000000.tar"
    with tarfile.open(shard) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    name, data = next((n, d) for n, d in members[2:] if n.endswith((".png", ".jpg")))
    with tarfile.open(shard, "w") as tar:
        for member, payload in members:
            payload = payload[: len(payload) // 2] if member == name else payload
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return f"shard-000000.tar: sample {name.split('.')[0]}: image does not open"


def _break_index_line(folder: Path) -> str:
    lines = (folder / "forge_index.jsonl").read_text().splitlines()
    lines[6] = lines[6][:50]
    (folder / "forge_index.jsonl").write_text("\n".join(lines) + "\n")
    return "forge_index.jsonl: line 7: not a QA row"


@pytest.mark.parametrize("fmt, tamper", [
    ("llava", _flip_answer), ("llava", _move_box), ("qwen2.5", _move_pixels), ("parquet", _truncate_in_parquet),
    ("webdataset", _truncate_in_tar), ("webdataset", _break_index_line),
])
def test_export_check_fails_a_tampered_export_one_line_per_problem(clean, tmp_path, fmt, tamper: Callable[[Path], str]):
    folder = tmp_path / fmt
    shutil.copytree(clean / fmt, folder)
    assert _check(folder).exit_code == 0  # clean, it passes
    expected = tamper(folder)
    result = _check(folder)
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem:")]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(problems) == 1 and problems[0].startswith(f"problem: {expected}"), result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"error: {folder}: 1 problem in 20 rows")
