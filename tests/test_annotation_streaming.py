"""Annotation files are read streaming: a file of a few hundred MB is read in memory that does not grow with
it, the block scanner finds the same structure as a character-by-character reading whatever the block
cuts, and the column-by-column path for plain boxes gives exactly the rows of the item-by-item path."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from annotated_data import write_big_coco, write_big_openimages
from forge.perception.annotations import check_image
from forge.progress import no_progress
from forge.sources import coco
from forge.sources.json_scan import CLOSING, COMMA, OPENING, JsonScanner
from forge.sources.problems import Problems

READ_ONE = """
import sys
from pathlib import Path
from forge.perception.annotations import check_image
from forge.progress import no_progress
from forge.sources.coco import read_coco
from forge.sources.openimages import read_openimages
from forge.sources.problems import Problems
path, work = Path(sys.argv[1]), Path(sys.argv[2])
with no_progress("", 0, "bytes") as bar:
    if path.suffix == ".json":
        read_coco(path, work, Problems(path), check_image, bar)
    else:
        read_openimages(path, work, Problems(path), bar)
print(int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) * 1024)  # not ru_maxrss: inherited at fork
"""


def _peak_reading(path: Path, work: Path) -> int:
    """Peak RSS (bytes) of a fresh process that reads `path` into `work`."""
    work.mkdir()
    out = subprocess.run([sys.executable, "-c", READ_ONE, str(path), str(work)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_a_200_mb_file_is_read_in_memory_that_does_not_grow_with_it(tmp_path):
    """Python objects of a 230 MB COCO file take 1.3 GB (json.load; 25M boxes would take 8 GB); the reader
    holds a batch at a time, so a file 4x larger reads with about the same peak."""
    peaks, sizes = {}, {}
    for images in (30_000, 120_000):
        folder = tmp_path / str(images)
        folder.mkdir()
        sizes["coco", images] = write_big_coco(folder / "instances.json", images, 15)
        sizes["openimages", images] = write_big_openimages(folder, images, 15)
        peaks["coco", images] = _peak_reading(folder / "instances.json", folder / "coco")
        peaks["openimages", images] = _peak_reading(folder / "boxes.csv", folder / "openimages")
        rows = pq.ParquetFile(folder / "coco" / "annotations.parquet").metadata.num_rows
        assert rows == pq.ParquetFile(folder / "openimages" / "annotations.parquet").metadata.num_rows == images * 15
    assert sizes["coco", 120_000] > 200e6, sizes
    for fmt in ("coco", "openimages"):
        small, big = peaks[fmt, 30_000], peaks[fmt, 120_000]
        assert big < small + 100e6, (fmt, peaks)  # flat: the batch, not the file
        assert big < 800e6, (fmt, peaks, sizes)  # never the file's objects (json.load of it peaks at 1.3 GB)


def _levels(text: bytes, deepest: int) -> list[tuple[int, int, int]]:
    """(position, kind, level) of the brackets and commas outside strings, reading one character at a time."""
    out, depth, in_string, escaped = [], 0, False, False
    for at, char in enumerate(text):
        if in_string:
            in_string = escaped or char != ord('"')
            escaped = not escaped and char == ord("\\")
            continue
        if char == ord('"'):
            in_string = True
        elif char in b"[{":
            depth += 1
            if depth - 1 <= deepest:
                out.append((at, OPENING, depth - 1))
        elif char in b"]}":
            depth -= 1
            if depth <= deepest:
                out.append((at, CLOSING, depth))
        elif char == ord(",") and depth <= deepest:
            out.append((at, COMMA, depth))
    return out


def _hostile_json(rng: random.Random) -> bytes:
    """COCO-like JSON whose strings hold brackets, commas, quotes and runs of backslashes."""
    def text() -> str:
        return "".join(rng.choice(['[', ']', '{', '}', ',', '"', '\\', '\\\\', 'a', ' ', ':']) for _ in range(rng.randint(0, 12)))

    def value(depth: int):
        if depth > 3 or rng.random() < 0.3:
            return rng.choice([text(), rng.randint(-5, 5), 1.5, None, True])
        if rng.random() < 0.5:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {text(): value(depth + 1) for _ in range(rng.randint(0, 4))}

    document = {"info": value(1), "images": [value(2) for _ in range(rng.randint(0, 6))],
                "annotations": [{"bbox": [1, 2, 3, 4], text(): value(3)} for _ in range(rng.randint(0, 6))]}
    return json.dumps(document, indent=rng.choice([None, 1])).encode()


@pytest.mark.parametrize("seed", range(40))
def test_the_scanner_finds_every_bracket_and_comma_whatever_the_block_cuts(seed):
    rng = random.Random(seed)
    text = _hostile_json(rng)
    expected = _levels(text, 2)
    scanner, found, start = JsonScanner(limit=32, levels=2), [], 0
    while start < len(text):  # blocks of 1 to 40 bytes: cuts inside strings and between backslashes
        block = text[start:start + rng.randint(1, 40)]
        marks = scanner.scan(block)
        found += [(int(p) + start, int(k), int(v)) for p, k, v in zip(marks.positions, marks.kinds, marks.levels)]
        start += len(block)
    assert found == expected
    assert scanner.complete
    assert JsonScanner(limit=32, levels=2).scan(b"[" * 33) is None  # deeper than the limit


def _read(path: Path, folder: Path) -> tuple[list[dict], list[str]]:
    folder.mkdir()
    problems = Problems(path)
    with no_progress("", 0, "bytes") as bar:
        coco.read_coco(path, folder, problems, check_image, bar)
    return pq.read_table(folder / "annotations.parquet").to_pylist(), problems.lines


def test_the_column_path_gives_the_rows_of_the_item_path(tmp_path, monkeypatch):
    """Plain boxes go through Arrow a batch at a time; a batch with a mask, an odd type or a value out of
    range goes item by item. Both give the same rows, in the same order, with the same positions."""
    path = tmp_path / "instances.json"
    write_big_coco(path, 3_000, 12)
    document = json.loads(path.read_text())
    document["annotations"][5]["id"] = None  # a null id: the item path's business (it is not a missing key)
    document["annotations"][7].update(score=0.25, iscrowd=1)
    for entry in document["annotations"][100:110]:
        entry["segmentation"] = []  # an empty mask is no mask
    path.write_text(json.dumps(document, indent=1))  # newlines inside items
    monkeypatch.setattr(coco, "BLOCK", 65_536)
    monkeypatch.setattr(coco, "BATCH_BYTES", 200_000)  # many batches, cut mid-file
    fast, problems = _read(path, tmp_path / "fast")
    taken = []
    monkeypatch.setattr(coco, "_fast_annotations", lambda *args: taken.append(args) or False)
    slow, _ = _read(path, tmp_path / "slow")
    assert len(taken) > 10 and not problems
    assert fast == slow and len(fast) == 36_000
    assert [row["position"] for row in fast] == list(range(36_000))
    assert fast[7]["score"] == 0.25 and fast[7]["crowd"] and fast[5]["annotation_id"] == "5"
    assert np.allclose([fast[0][k] for k in "xywh"], document["annotations"][0]["bbox"])
