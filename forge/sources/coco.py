"""COCO instances JSON (COCO, LVIS, Objects365), read once and streaming, into Parquet parts.

A 25-million-box file does not fit in memory as Python objects, so it is never loaded whole: the file
is read in blocks and fed to three incremental parsers (ijson's C backend) at once, for its
`categories`, `images` and `annotations` arrays, whatever their order in the file. Images and
annotations are checked field by field as they arrive and written to Parquet a batch at a time
(`images.parquet`, `annotations.parquet`); categories are few and kept. Cross-references (an
annotation's image, its category, duplicate ids) are checked afterwards over the Parquet parts
(`annotated.py`). LVIS image entries' `not_exhaustive_category_ids` are kept: counting needs exhaustive
labels (its `neg_category_ids`, verified absent, need nothing: forge never asks a count of zero).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import ijson
import pyarrow as pa
import pyarrow.parquet as pq

from forge.progress import Progress
from forge.sources.coco_masks import MaskShape, shape_of
from forge.sources.json_nesting import NestingGuard
from forge.sources.problems import Problems

BLOCK = 16 << 20  # bytes read at a time
BATCH = 200_000  # rows buffered before they are written
MAX_NESTING = 32  # a COCO file nests 6 deep; ijson pays quadratically for depth (json_nesting.py)

IMAGES_SCHEMA = pa.schema([("position", pa.int64()), ("image_key", pa.string()), ("file_name", pa.string()),
                           ("width", pa.int64()), ("height", pa.int64()), ("extras", pa.string()),
                           ("not_exhaustive", pa.list_(pa.int64()))])
ANNOTATIONS_SCHEMA = pa.schema([("position", pa.int64()), ("annotation_id", pa.string()), ("image_key", pa.string()),
                                ("category", pa.string()), ("x", pa.float64()), ("y", pa.float64()), ("w", pa.float64()),
                                ("h", pa.float64()), ("score", pa.float64()), ("crowd", pa.bool_()),
                                ("depiction", pa.bool_()), ("truncated", pa.bool_()), ("segmentation", pa.string()),
                                ("mask_height", pa.int64()), ("mask_width", pa.int64()), ("mask_pixels", pa.int64())])
EXTRA_KEYS = ("K", "fx", "fy", "cx", "cy", "gravity", "pitch", "roll", "camera_height")  # a camera and gravity, if given


def number(value: object) -> bool:
    """A JSON number a pixel, score or metre can be (JSON integers of any size arrive as Python ints)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 1e12 if isinstance(value, int) else math.isfinite(value) and abs(value) < 1e12


def inside(file_name: str) -> bool:
    """A relative path that stays inside the images folder."""
    parts = Path(file_name).parts
    return bool(parts) and not Path(file_name).is_absolute() and ".." not in parts and ":" not in parts[0]


def key_of(image_id: object) -> str:
    """A dataset's image id (an int or a text) as one text, the two kinds kept apart."""
    return json.dumps(image_id)


class _Writer:
    """Rows of one schema, buffered as columns and written a batch at a time."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path, self.schema = path, schema
        self.columns: dict[str, list] = {name: [] for name in schema.names}
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def add(self, row: dict) -> None:
        for name, values in self.columns.items():
            values.append(row[name])
        if len(self.columns["position"]) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.columns["position"]:
            return
        table = pa.table(self.columns, schema=self.schema)
        self.writer = self.writer or pq.ParquetWriter(self.path, self.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows
        self.columns = {name: [] for name in self.schema.names}

    def close(self) -> None:
        self.flush()
        if self.writer is None:
            pq.write_table(self.schema.empty_table(), self.path)
        else:
            self.writer.close()


def read_coco(path: Path, folder: Path, problems: Problems,
              check_image: Callable[[dict, int, int, str], list[tuple[str, str]]], bar: Progress) -> dict[int, str]:
    """Stream a COCO instances file into `folder`/images.parquet and annotations.parquet; return its
    categories (id -> name). Problems go to `problems` with their key paths; `check_image(entry, width,
    height, where)` is the caller's check of an image entry's camera and gravity; `bar` counts bytes read."""
    categories: dict[int, str] = {}
    images = _Writer(folder / "images.parquet", IMAGES_SCHEMA)
    annotations = _Writer(folder / "annotations.parquet", ANNOTATIONS_SCHEMA)
    seen = {"categories": 0, "images": 0, "annotations": 0}

    def category(entry: object) -> None:
        where = f"categories[{seen['categories']}]"
        seen["categories"] += 1
        cat_id, name = problems.value(entry, "id", int, where), problems.value(entry, "name", str, where)
        if name is not None and not name.strip():
            problems.add(f"{where}.name", "is empty; every category needs the name questions will use")
        if cat_id in categories:
            problems.add(f"{where}.id", f"{cat_id!r} is used twice; give each category its own id")
        elif cat_id is not None and name is not None:
            categories[cat_id] = name

    def image(entry: object) -> None:
        position = seen["images"]
        seen["images"] += 1
        where = f"images[{position}]"
        image_id = problems.value(entry, "id", (int, str), where)
        file_name = problems.value(entry, "file_name", str, where)
        width, height = problems.value(entry, "width", int, where), problems.value(entry, "height", int, where)
        for key, size in (("width", width), ("height", height)):
            if size is not None and not 0 < size < 1 << 31:
                problems.add(f"{where}.{key}", f"{size!r} must be a positive number of pixels")
        if file_name is not None and not inside(file_name):
            problems.add(f"{where}.file_name", f"{file_name!r} is outside the images folder; give a path relative to it")
        if image_id is None or file_name is None or width is None or height is None:
            return
        for key, message in check_image(entry, width, height, where):
            problems.add(key, message)
        partial = _ids(entry.get("not_exhaustive_category_ids"), f"{where}.not_exhaustive_category_ids", problems)
        extras = {key: entry[key] for key in EXTRA_KEYS if key in entry}
        images.add({"position": position, "image_key": key_of(image_id), "file_name": file_name, "width": width,
                    "height": height, "extras": json.dumps(extras) if extras else None, "not_exhaustive": partial})

    def annotation(entry: object) -> None:
        position = seen["annotations"]
        seen["annotations"] += 1
        where = f"annotations[{position}]"
        image_id = problems.value(entry, "image_id", (int, str), where)
        category_id = problems.value(entry, "category_id", int, where)
        bbox = problems.value(entry, "bbox", list, where)
        if bbox is not None and (len(bbox) != 4 or not all(number(v) for v in bbox) or bbox[2] <= 0 or bbox[3] <= 0):
            problems.add(f"{where}.bbox", f"{_short(bbox)}: expected [x, y, width, height], finite pixels, width and "
                                          "height > 0")
            bbox = None
        score = entry.get("score", 1.0) if isinstance(entry, dict) else 1.0
        if not number(score) or not 0 <= score <= 1:
            problems.add(f"{where}.score", f"{_short(score)} must be a number from 0 to 1 (or leave it out)")
            score = None
        crowd = entry.get("iscrowd", 0) if isinstance(entry, dict) else 0
        if crowd not in (0, 1):
            problems.add(f"{where}.iscrowd", f"{_short(crowd)} must be 0 or 1")
        segmentation = entry.get("segmentation") or None if isinstance(entry, dict) else None
        shape = MaskShape()
        if segmentation is not None:
            try:
                shape = shape_of(segmentation)
            except ValueError as exc:
                problems.add(f"{where}.segmentation", str(exc))
                return
        if image_id is None or category_id is None or bbox is None or score is None:
            return
        annotations.add({"position": position, "annotation_id": str(entry.get("id", position)),
                         "image_key": key_of(image_id), "category": str(category_id), "x": float(bbox[0]),
                         "y": float(bbox[1]), "w": float(bbox[2]), "h": float(bbox[3]), "score": float(score),
                         "crowd": crowd == 1, "depiction": False, "truncated": False,
                         "segmentation": json.dumps(segmentation) if segmentation is not None else None,
                         "mask_height": shape.height, "mask_width": shape.width, "mask_pixels": shape.pixels})

    targets = {"categories": category, "images": image, "annotations": annotation}
    parsers = {name: ijson.items_coro(_Sink(handle), f"{name}.item", use_float=True) for name, handle in targets.items()}
    try:
        with path.open("rb") as file:
            guard = NestingGuard(MAX_NESTING)
            while block := file.read(BLOCK):
                if not guard.feed(block):
                    problems.fail(f"{path}: COCO instances JSON nested more than {MAX_NESTING} deep, too deep to be an "
                                  "instances file (images, annotations, categories)")
                for parser in parsers.values():
                    parser.send(block)
                bar.update(len(block))
        for parser in parsers.values():
            parser.close()
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        problems.fail(f"{path}: cannot read COCO instances JSON: {_reason(exc)}{_hint(_reason(exc))}")
    images.close()
    annotations.close()
    for name, count in seen.items():
        if not count and name != "annotations":
            problems.add("(top level)", f"no {name!r} (COCO instances format: images, annotations, categories)")
    return {cat_id: name.strip() for cat_id, name in categories.items()}


class _Sink:
    """The target ijson's `items_coro` sends each parsed item to."""

    def __init__(self, handle: Callable[[object], None]):
        self.handle = handle

    def send(self, item: object) -> None:
        self.handle(item)


def _ids(value: object, where: str, problems: Problems) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        problems.add(where, f"{_short(value)} must be a list of category ids")
        return []
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _hint(message: str) -> str:
    """What a parser's message means for the user's file."""
    if "premature EOF" in message:
        return " (the file is cut short: copy or download it again)"
    if "overflow" in message:
        return " (a number larger than any id, pixel or score can be)"
    if "utf8" in message.lower().replace("-", ""):
        return " (the file is not UTF-8 text: JSON must be)"
    return ""


def _reason(exc: Exception) -> str:
    text = exc.args[0] if exc.args else str(exc)
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)  # yajl says some in bytes
    return " ".join(text.split())[:200]
