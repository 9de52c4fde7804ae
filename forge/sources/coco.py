"""COCO instances JSON (COCO, LVIS, Objects365), read once and streaming, into Parquet parts.

A 25-million-box file does not fit in memory as Python objects, so it is never loaded whole: the file
is read in blocks, scanned for the brackets and commas of its top levels (`json_scan.py`), and its
`categories`, `images` and `annotations` arrays, whatever their order in the file, are cut into
batches of whole items. A batch of plain box annotations is parsed, checked and converted column by
column by Arrow's JSON reader; any other batch (masks, odd types, a value out of range) is read item
by item (ijson's C backend) and checked field by field, so every problem is named with its key path.
Images and annotations are written to Parquet a batch at a time (`images.parquet`,
`annotations.parquet`); categories are few and kept. Cross-references (an
annotation's image, its category, duplicate ids) are checked afterwards over the Parquet parts
(`annotated.py`). LVIS image entries' `not_exhaustive_category_ids` are kept: counting needs exhaustive
labels (its `neg_category_ids`, verified absent, need nothing: forge never asks a count of zero).
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Callable, Container, Iterator

import ijson
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from forge.progress import Progress
from forge.sources.coco_masks import MaskShape, shape_of
from forge.sources.json_scan import COMMA, OPENING, JsonScanner, Marks
from forge.sources.problems import Problems

BLOCK = 16 << 20  # bytes read at a time
BATCH_BYTES = 32 << 20  # text of whole items parsed at once
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
KEY = re.compile(rb'"((?:[^"\\]|\\.)*)"\s*:\s*\Z')  # the key a top-level value follows
NEWLINES_TO_SPACES = bytes.maketrans(b"\r\n", b"  ")
FAST_ANNOTATIONS = pj.ParseOptions(
    explicit_schema=pa.schema([("id", pa.int64()), ("image_id", pa.int64()), ("category_id", pa.int64()),
                               ("bbox", pa.list_(pa.float64())), ("score", pa.float64()), ("iscrowd", pa.int64()),
                               ("segmentation", pa.list_(pa.null()))]),
    unexpected_field_behavior="ignore")
EXTRA_KEYS = ("K", "fx", "fy", "cx", "cy", "gravity", "pitch", "roll", "camera_height")  # a camera and gravity, if given


def number(value: object) -> bool:
    """A JSON number a pixel, score or metre can be (JSON integers of any size arrive as Python ints)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 1e12 if isinstance(value, int) else math.isfinite(value) and abs(value) < 1e12


def inside(file_name: str) -> bool:
    """A relative path that stays inside the images folder."""
    parts = [part for part in file_name.split("/") if part not in ("", ".")]  # as PurePosixPath splits it
    return bool(parts) and not file_name.startswith("/") and ".." not in parts and ":" not in parts[0]


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

    def write(self, table: pa.Table) -> None:
        """Rows already in columns, after the buffered ones."""
        self.flush()
        self.writer = self.writer or pq.ParquetWriter(self.path, self.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

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
        given = entry.get("id")  # an annotation without an id is known by its position
        annotations.add({"position": position, "annotation_id": str(position if given is None else given),
                         "image_key": key_of(image_id), "category": str(category_id), "x": float(bbox[0]),
                         "y": float(bbox[1]), "w": float(bbox[2]), "h": float(bbox[3]), "score": float(score),
                         "crowd": crowd == 1, "depiction": False, "truncated": False,
                         "segmentation": json.dumps(segmentation) if segmentation is not None else None,
                         "mask_height": shape.height, "mask_width": shape.width, "mask_pixels": shape.pixels})

    handlers = {"categories": _Items(category), "images": _Items(image),
                "annotations": _Items(annotation, lambda text, items: _fast_annotations(text, items, seen, annotations))}
    try:
        for name, text, commas in _top_level_arrays(path, handlers, problems, bar):
            handlers[name].batch(text, commas)
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        problems.unreadable(f"{path}: cannot read COCO instances JSON: {_reason(exc)}{_hint(_reason(exc))}")
    images.close()
    annotations.close()
    for name, count in seen.items():
        if not count and name != "annotations":
            problems.add("(top level)", f"no {name!r} (COCO instances format: images, annotations, categories)")
    return {cat_id: name.strip() for cat_id, name in categories.items()}


def _top_level_arrays(path: Path, wanted: Container[str], problems: Problems,
                      bar: Progress) -> Iterator[tuple[str, bytes, np.ndarray]]:
    """The `wanted` top-level arrays of the file, cut into batches of whole items: (key, the items' text,
    the offsets of the commas between them). Only these arrays are parsed; the rest is only scanned."""
    scanner = JsonScanner(MAX_NESTING, levels=2)
    name: str | None = None  # the wanted array being read
    buffer, commas, tail = bytearray(), [], b""
    with path.open("rb") as file:
        while block := file.read(BLOCK):
            marks = scanner.scan(block)
            if marks is None:
                problems.unreadable(f"{path}: COCO instances JSON nested more than {MAX_NESTING} deep, too deep to be an "
                              "instances file (images, annotations, categories)")
            edges = np.flatnonzero((marks.levels == 1) & (marks.kinds != COMMA))
            start = 0
            for edge in edges.tolist():
                at = int(marks.positions[edge])
                if marks.kinds[edge] == OPENING:
                    key = KEY.search((tail + block[max(at - 512, 0):at])[-512:])
                    name = key.group(1).decode("utf-8", "replace") if key else None
                    if name in wanted and block[at] != ord("["):
                        problems.add(f"(top level).{name}", "must be a list (COCO instances format)")
                    name, start = (name, at + 1) if name in wanted and block[at] == ord("[") else (None, start)
                elif name is not None:
                    _take(buffer, commas, block, start, at, marks)
                    yield name, bytes(buffer), np.concatenate(commas) if commas else np.zeros(0, np.int64)
                    buffer, commas, name = bytearray(), [], None
            if name is not None:
                _take(buffer, commas, block, start, len(block), marks)
                if len(buffer) >= BATCH_BYTES and commas and len(commas[-1]):
                    cut = int(commas[-1][-1])
                    yield name, bytes(buffer[:cut]), np.concatenate(commas)[:-1]
                    buffer, commas = buffer[cut + 1:], []
            tail = block[-512:]
            bar.update(len(block))
    if not scanner.complete or name is not None:
        problems.unreadable(f"{path}: cannot read COCO instances JSON: premature EOF{_hint('premature EOF')}")


def _take(buffer: bytearray, commas: list[np.ndarray], block: bytes, start: int, stop: int, marks: Marks) -> None:
    """Append block[start:stop] to `buffer`, with the item commas that fall in it (as buffer offsets)."""
    inside = (marks.levels == 2) & (marks.kinds == COMMA) & (marks.positions >= start) & (marks.positions < stop)
    commas.append(marks.positions[inside] - start + len(buffer))
    buffer += block[start:stop]


class _Items:
    """What becomes of a top-level array's batches: `fast(text, items)` may take a whole batch at once
    (returning False when the batch needs a closer look); otherwise each item goes to `handle`."""

    def __init__(self, handle: Callable[[object], None], fast: Callable[[bytes, int], bool] | None = None):
        self.handle, self.fast = handle, fast

    def batch(self, text: bytes, commas: np.ndarray) -> None:
        items = len(commas) + 1 if text.strip() else 0
        if self.fast is not None and items and self.fast(_lines(text, commas), items):
            return
        for item in ijson.items(b"[" + text + b"]", "item", use_float=True):
            self.handle(item)


def _lines(text: bytes, commas: np.ndarray) -> bytes:
    """The items one per line (JSON strings hold no raw newline, so every newline is whitespace)."""
    lines = np.frombuffer(text.translate(NEWLINES_TO_SPACES), np.uint8).copy()
    lines[commas] = ord("\n")
    return lines.tobytes()


def _fast_annotations(lines: bytes, items: int, seen: dict, out: _Writer) -> bool:
    """A batch of plain box annotations (no masks) checked and converted column by column by Arrow; False
    when any item needs a closer look (a missing key, a wrong type, a mask, a value out of range), so the
    item-by-item path reports it with its key path."""
    if b"null" in lines:  # Arrow reads a null as a missing key; the item-by-item path tells them apart
        return False
    try:
        table = pj.read_json(io.BytesIO(lines), parse_options=FAST_ANNOTATIONS,
                             read_options=pj.ReadOptions(block_size=4 << 20))
    except pa.ArrowInvalid:
        return False
    if table.num_rows != items or any(table.column(key).null_count for key in ("image_id", "category_id", "bbox")):
        return False
    bbox = table.column("bbox").combine_chunks()
    values = bbox.flatten().to_numpy(zero_copy_only=False)
    if pc.any(pc.not_equal(pc.list_value_length(bbox), 4)).as_py() or not np.all(np.abs(values) < 1e12):
        return False
    box = values.reshape(-1, 4)
    score = pc.fill_null(table.column("score"), 1.0).to_numpy()
    crowd = pc.fill_null(table.column("iscrowd"), 0).to_numpy()
    segmentation = pc.fill_null(pc.list_value_length(table.column("segmentation")), 0).to_numpy()
    if (not np.all(box[:, 2:] > 0) or not np.all((score >= 0) & (score <= 1)) or not np.all((crowd == 0) | (crowd == 1))
            or np.any(segmentation)):
        return False
    first = seen["annotations"]
    seen["annotations"] += items
    position = pa.array(np.arange(first, first + items))
    nothing = pa.nulls(items)
    out.write(pa.table({
        "position": position, "annotation_id": pc.cast(pc.coalesce(table.column("id"), position), pa.string()),
        "image_key": pc.cast(table.column("image_id"), pa.string()),
        "category": pc.cast(table.column("category_id"), pa.string()),
        "x": box[:, 0], "y": box[:, 1], "w": box[:, 2], "h": box[:, 3], "score": score, "crowd": crowd == 1,
        "depiction": np.zeros(items, bool), "truncated": np.zeros(items, bool), "segmentation": nothing,
        "mask_height": nothing, "mask_width": nothing, "mask_pixels": nothing}).cast(ANNOTATIONS_SCHEMA))
    return True


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
