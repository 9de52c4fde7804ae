"""`forge export-check DIR`: open an export the way its trainer will and check what it would learn.

Every image must open (without EXIF orientation: trainers do not apply it) at the size the export
recorded; every box must lie inside its image; a left/right answer must agree with the boxes as
the trainer sees the picture; and the annotation files the manifest names must exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from forge.errors import ForgeError

_ORIENTATION = 0x0112


@dataclass
class CheckReport:
    rows: int = 0
    images: int = 0
    problems: list[str] = field(default_factory=list)


def _image_problem(file: Path, width: int, height: int) -> str | None:
    try:
        with Image.open(file) as img:
            img.load()
            if img.size != (width, height):
                return f"is {img.size[0]}x{img.size[1]}, the export says {width}x{height}"
            if img.getexif().get(_ORIENTATION, 1) != 1:
                return "carries an EXIF rotation a trainer will not apply"
    except (OSError, ValueError) as exc:
        return f"does not open: {exc}"
    return None


def check_export(folder: Path) -> CheckReport:
    from forge.export import INDEX, MANIFEST

    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ForgeError(f"{folder}: no {MANIFEST}: not a forge export (write one with forge sample --out DIR)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        lines = (folder / INDEX).read_text(encoding="utf-8").splitlines()
        files, image_root = manifest["files"], manifest["image_root"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ForgeError(f"{folder}: damaged export ({exc}); export it again") from None
    report = CheckReport()
    for name in files:
        if not (folder / name).exists():
            report.problems.append(f"{name}: named in {MANIFEST} but missing")
    root = Path(image_root) if image_root else None
    seen: dict[str, str | None] = {}
    for line in lines:
        row = json.loads(line)
        report.rows += 1
        where = f"qa {row['qa_id']}"
        if row["image"] is not None and row["image"] not in seen:
            seen[row["image"]] = _image_problem((root or folder) / row["image"], row["width"], row["height"])
            if seen[row["image"]]:
                report.problems.append(f"image {row['image']} ({where}) {seen[row['image']]}")
        for obj in row["objects"]:
            x1, y1, x2, y2 = obj["box"]
            if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
                report.problems.append(f"{where}: box of {obj['label']!r} {obj['box']} is not inside the image")
        if row["family"] == "left_right" and row["answer"] in ("left", "right") and len(row["objects"]) == 2:
            a, b = (o["box"] for o in row["objects"])
            seen_left = "left" if a[0] + a[2] < b[0] + b[2] else "right"
            if row["answer"] != seen_left:
                report.problems.append(f"{where}: answers {row['answer']!r} but the boxes say {seen_left!r}")
    report.images = len(seen)
    return report
