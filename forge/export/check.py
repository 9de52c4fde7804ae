"""`forge export-check DIR`: read an export the way its trainer will and check what it would learn.

The check reads the format's own files, the ones the trainer reads (`llava.json`, the ShareGPT file
that `dataset_info.json` names, `openai.jsonl`, `qwen.json`, `qwen2_5.json`, `data.parquet`, the tar
shards `shards.txt` lists, `rows.jsonl`), decodes every picture the trainer will decode (files, base64
data URLs, image bytes inside Parquet and tar shards; no EXIF rotation may be left) and holds each
sample against `forge_index.jsonl`, the rows as forge exported them: the picture is the size the
sample states and the index records; each answer is the index's answer in the format's own notation
(a box is the index's box, in pixels of the resized picture for Qwen2.5-VL; a two-way answer is the
index's); every index row is in a sample. In the index itself every box lies inside its picture and a
left/right answer agrees with the boxes. Each problem is one line naming the file and the sample.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from forge.errors import ForgeError
from forge.sources.decoding import UNREADABLE, reason
from forge.export import FORMATS, INDEX, MANIFEST
from forge.export.reading import ReadSample, Unreadable
from forge.export.samples import ExportOptions

_ORIENTATION = 0x0112
_INDEX_FIELDS = {"qa_id": str, "family": str, "answer_type": str, "answer": str, "objects": list, "width": int, "height": int}


@dataclass
class CheckReport:
    rows: int = 0
    samples: int = 0
    images: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, where: str, problem: str) -> None:
        self.problems.append(f"{where}: {problem}")


def _open(image: Path | bytes) -> tuple[int, int] | str:
    """The picture's size as a trainer decodes it (PIL, no EXIF rotation applied), or why it cannot."""
    try:
        with Image.open(image if isinstance(image, Path) else io.BytesIO(image)) as img:
            img.load()
            if img.getexif().get(_ORIENTATION, 1) != 1:
                return "carries an EXIF rotation a trainer will not apply"
            return img.size
    except UNREADABLE as exc:  # what PIL raises on a broken file, the trainer's loader raises too
        return f"does not open ({type(exc).__name__}: {reason(exc)})"


def _index_row(line: str) -> dict:
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    for name, kind in _INDEX_FIELDS.items():
        if not isinstance(row.get(name), kind):
            raise ValueError(f"{name} is missing or not {kind.__name__}")
    for obj in row["objects"]:
        box = obj.get("box") if isinstance(obj, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise ValueError("an object has no box [x1, y1, x2, y2]")
    return row


def _row_problems(row: dict) -> list[str]:
    """What is wrong in an index row on its own: boxes outside the picture, left/right against the boxes."""
    problems = [f"box of {obj.get('label')!r} {obj['box']} is not inside the image" for obj in row["objects"]
                if not (0 <= obj["box"][0] < obj["box"][2] <= 1 and 0 <= obj["box"][1] < obj["box"][3] <= 1)]
    if row["family"] == "left_right" and row["answer"] in ("left", "right") and len(row["objects"]) == 2:
        a, b = (o["box"] for o in row["objects"])
        seen_left = "left" if a[0] + a[2] < b[0] + b[2] else "right"
        if row["answer"] != seen_left:
            problems.append(f"answers {row['answer']!r} but the boxes say {seen_left!r}")
    return problems


class _Checker:
    """One pass over an export's samples, against its index."""

    def __init__(self, folder: Path, manifest: dict, index: dict[str, dict], index_whole: bool, report: CheckReport):
        self.folder, self.index, self.report = folder, index, report
        self.index_whole = index_whole  # no line of the index is broken: a QA id it lacks is a problem
        self.format = FORMATS[manifest["format"]]
        self.options = ExportOptions(**manifest["options"])
        self.root = Path(manifest["image_root"]) if manifest["image_root"] else folder
        self.pictures: dict[str, tuple[int, int] | str] = {}  # picture key -> size or why it does not open
        self.flagged: set[str] = set()  # pictures with a problem reported (once each)
        self.seen: set[str] = set()
        self.complete = True  # every sample was read: index rows in no sample are then missing

    def run(self) -> None:
        try:
            for sample in self.format.read(self.folder, self.root):
                self.sample(sample)
        except Unreadable as exc:
            self.report.problems.append(str(exc))
            self.complete = False
        if self.complete and self.index_whole:
            for qa_id in sorted(self.index.keys() - self.seen):
                self.report.add(f"{INDEX}: qa {qa_id}", "is in no sample of the export's files")

    def sample(self, sample: ReadSample) -> None:
        where = f"{sample.file}: {sample.name}" if sample.name else sample.file
        if sample.problem is not None:
            self.report.add(where, sample.problem)
            self.complete = False
            return
        self.report.samples += 1
        if len(sample.qa_ids) != len(sample.answers):
            self.report.add(where, f"has {len(sample.answers)} answers for {len(sample.qa_ids)} QA ids")
            return
        rows = [(qa_id, answer, self.index.get(qa_id)) for qa_id, answer in zip(sample.qa_ids, sample.answers)]
        size = self.picture(sample, where, [row for _, _, row in rows if row is not None])
        for qa_id, answer, row in rows:
            if row is None:
                if self.index_whole:  # else its line is broken, and reported
                    self.report.add(f"{where} (qa {qa_id})", f"is not in {INDEX}")
                continue
            self.seen.add(qa_id)
            width, height = size or (row["width"], row["height"])
            expected = self.format.answer(row, width, height, self.options)
            if answer != expected:
                self.report.add(f"{where} (qa {qa_id})", f"answers {answer!r}; the index says {expected!r}")

    def picture(self, sample: ReadSample, where: str, rows: list[dict]) -> tuple[int, int] | None:
        """The size the trainer decodes the sample's picture at (None: it does not open); its problems once."""
        if isinstance(sample.image, Path):
            key, label = str(sample.image), f"image {_shown(sample.image, self.folder)}"
        else:
            key, label = hashlib.sha256(sample.image).hexdigest(), "image"
        if key not in self.pictures:
            self.pictures[key] = _open(sample.image)
            self.report.images += 1
        opened = self.pictures[key]
        problem = None
        if isinstance(opened, str):
            problem = opened
        else:
            expected = self.format.sizes(*opened, self.options)
            stated = {name: value for name, value in sample.stated.items() if expected.get(name) != value}
            recorded = {(row["width"], row["height"]) for row in rows} - {opened}
            if stated:
                problem = (f"is {opened[0]}x{opened[1]} ({_listed({k: expected.get(k) for k in stated})}); "
                           f"{sample.file} states {_listed(stated)}")
            elif recorded:
                problem = f"is {opened[0]}x{opened[1]}; {INDEX} records {'x'.join(map(str, min(recorded)))}"
        if problem and key not in self.flagged:
            self.flagged.add(key)
            self.report.add(where, f"{label} {problem}")
        return None if isinstance(opened, str) else opened


def _listed(values: dict[str, object]) -> str:
    return ", ".join(f"{name} {value}" for name, value in values.items())


def _shown(file: Path, folder: Path) -> str:
    """A picture's path as the user knows it: inside the export folder relative to it."""
    try:
        return file.relative_to(folder).as_posix()
    except ValueError:
        return str(file)


def check_export(folder: Path) -> CheckReport:
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ForgeError(f"{folder}: no {MANIFEST}: not a forge export (write one with forge sample --out DIR)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest["format"] not in FORMATS or not isinstance(manifest["options"], dict):
            raise ValueError(f"format {manifest['format']!r}")
        ExportOptions(**manifest["options"])
        lines = (folder / INDEX).read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ForgeError(f"{folder}: damaged export or one from an older forge ({type(exc).__name__}: {exc}); "
                         "export it again") from None
    report = CheckReport()
    missing = [name for name in files if not (folder / name).exists()]
    for name in missing:
        report.add(name, f"named in {MANIFEST} but missing; export again")
    index: dict[str, dict] = {}
    broken = 0
    for number, line in enumerate(lines, 1):
        try:
            row = _index_row(line)
        except ValueError as exc:
            report.add(f"{INDEX}: line {number}", f"not a QA row ({exc}); export again")
            broken += 1
            continue
        index[row["qa_id"]] = row
        for problem in _row_problems(row):
            report.add(f"{INDEX}: qa {row['qa_id']}", problem)
    report.rows = len(lines)
    if not missing:  # else the trainer stops at the missing file: that is the problem to fix
        _Checker(folder, manifest, index, not broken, report).run()
    return report
