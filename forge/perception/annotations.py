"""`perception: annotations`: COCO-style boxes plus depth maps from RGB-D, LiDAR or humans.

The JSON is read once when the plan is built (it is the index of the work); pixels and
depth maps are read per image inside a UDF.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import daft
import numpy as np
from daft import DataFrame, DataType, col
from PIL import Image

from forge.errors import ForgeError, SpecError
from forge.perception.masks import from_coco
from forge.perception.records import PERCEIVED_TYPE, STREAM_BATCH, Detection, failed, image_record, measured_objects
from forge.sources.decoding import check_size, oriented_size
from forge.sources.identity import content_id
from forge.spec.schema import AnnotationsSource, ObjectsSpec

DEPTH_SUFFIX = {"png16_mm": ".png", "npy_m": ".npy"}

_ANNOTATION_TYPE = DataType.list(
    DataType.struct({"label": DataType.string(), "score": DataType.float64(), "bbox": DataType.list(DataType.float64()),
                     "mask": DataType.string()})
)


MAX_PROBLEMS = 20  # listed one per line; the rest are counted


class _Problems:
    """A COCO file's problems, one line each: where (key path), the value, and how to fix it."""

    def __init__(self, path: Path):
        self.path, self.lines = path, []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{self.path}: {where}: {message}")

    def value(self, record: object, key: str, kind: type | tuple, where: str):
        """record[key] if it is of `kind` (never a bool), else None with a problem recorded."""
        if not isinstance(record, dict) or key not in record:
            self.add(where, f"missing {key!r} (COCO instances format)")
            return None
        value = record[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            self.add(f"{where}.{key}", f"{value!r} is not a {names}")
            return None
        return value

    def raise_any(self) -> None:
        if self.lines:
            more = len(self.lines) - MAX_PROBLEMS
            raise SpecError(self.lines[:MAX_PROBLEMS] + ([f"{self.path}: ... and {more} more problems"] if more > 0 else []))


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _inside(file_name: str) -> bool:
    """A relative path that stays inside the images folder."""
    parts = Path(file_name).parts
    return bool(parts) and not Path(file_name).is_absolute() and ".." not in parts and ":" not in parts[0]


def read_instances(path: Path) -> list[dict]:
    """Parse and check a COCO instances JSON: one record per image with its labelled boxes (pixels).

    Every problem is reported (one line each, with its key path) before any work starts: duplicate
    ids, non-numeric or non-finite values, empty sizes and boxes, file names outside the images folder.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ForgeError(f"{path}: cannot read COCO instances JSON: {exc}") from None
    problems = _Problems(path)
    for key in ("images", "annotations", "categories"):
        if problems.value(data, key, list, "(top level)") is None:
            problems.raise_any()
    names: dict[int, str] = {}
    for i, cat in enumerate(data["categories"]):
        cat_id, name = problems.value(cat, "id", int, f"categories[{i}]"), problems.value(cat, "name", str, f"categories[{i}]")
        if cat_id in names:
            problems.add(f"categories[{i}].id", f"{cat_id!r} is used twice; give each category its own id")
        elif cat_id is not None and name is not None:
            names[cat_id] = name
    images: dict[object, dict] = {}
    first: dict[object, int] = {}
    for i, img in enumerate(data["images"]):
        where = f"images[{i}]"
        image_id = problems.value(img, "id", (int, str), where)
        file_name = problems.value(img, "file_name", str, where)
        width, height = problems.value(img, "width", int, where), problems.value(img, "height", int, where)
        if image_id in first:
            problems.add(f"{where}.id", f"{image_id!r} is also images[{first[image_id]}].id; each picture needs its own id "
                                        "(else one image's boxes would be asked about another)")
            continue
        for key, size in (("width", width), ("height", height)):
            if size is not None and size <= 0:
                problems.add(f"{where}.{key}", f"{size!r} must be a positive number of pixels")
        if file_name is not None and not _inside(file_name):
            problems.add(f"{where}.file_name", f"{file_name!r} is outside the images folder; give a path relative to it")
        if image_id is not None:
            first[image_id] = i
            images[image_id] = {"file_name": file_name, "width": width, "height": height, "annotations": []}
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        image_id = problems.value(ann, "image_id", (int, str), where)
        category = problems.value(ann, "category_id", int, where)
        bbox = problems.value(ann, "bbox", list, where)
        if image_id is not None and image_id not in images:
            problems.add(f"{where}.image_id", f"{image_id!r} is not in images")
            continue
        if category is not None and category not in names:
            problems.add(f"{where}.category_id", f"{category!r} is not in categories")
        if bbox is not None and (len(bbox) != 4 or not all(_finite(v) for v in bbox) or bbox[2] <= 0 or bbox[3] <= 0):
            problems.add(f"{where}.bbox", f"{bbox!r}: expected [x, y, width, height], finite pixels, width and height > 0")
            bbox = None
        score = ann.get("score", 1.0) if isinstance(ann, dict) else 1.0
        if not _finite(score) or not 0 <= score <= 1:
            problems.add(f"{where}.score", f"{score!r} must be a number from 0 to 1 (or leave it out)")
            score = None
        image = images.get(image_id)
        if image is None or category not in names or bbox is None or score is None:
            continue
        mask = None
        if ann.get("segmentation") and _finite(image["width"]) and _finite(image["height"]) and image["width"] > 0 \
                and image["height"] > 0:
            try:
                mask = from_coco(ann["segmentation"], image["height"], image["width"])
            except (TypeError, ValueError, KeyError) as exc:
                problems.add(f"{where}.segmentation", f"not COCO polygons or RLE ({exc})")
        image["annotations"].append({"label": names[category], "score": float(score), "bbox": [float(v) for v in bbox],
                                     "mask": mask})
    problems.raise_any()
    return [images[k] for k in sorted(images, key=str)]


SHAPE_TOLERANCE = 0.01  # aspect ratios this close are one shape at two resolutions


def _decoded_size(data: bytes) -> tuple[int, int]:
    """The picture's (width, height) after EXIF orientation, once its pixels decode (a truncated or
    non-image file raises here, as it would for the models); JPEGs decode at reduced scale."""
    with Image.open(io.BytesIO(data)) as img:
        check_size(img)
        size = oriented_size(img)
        img.draft("RGB", (512, 512))
        img.load()
    return size


def _same_shape(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Same aspect ratio: boxes and masks, kept as fractions, fit both."""
    return abs(a[0] * b[1] - b[0] * a[1]) <= SHAPE_TOLERANCE * b[0] * a[1]


def load_depth(path: Path, depth_format: str) -> np.ndarray:
    """Depth in metres as float32; 0 or non-finite marks pixels without a measurement."""
    if depth_format == "npy_m":
        depth = np.load(path, allow_pickle=False)
    else:
        with Image.open(path) as img:
            depth = np.asarray(img, dtype=np.float64) / 1000.0
    if depth.ndim != 2:
        raise ValueError(f"depth map {path.name} has shape {depth.shape}, expected (height, width)")
    return depth.astype(np.float32)


@daft.cls
class ReadAnnotated:
    """Reads one annotated image: content id from its bytes, object depth from its depth map, over
    each object's mask when the annotation has a `segmentation`."""

    def __init__(self, source: AnnotationsSource, images_dir: Path, depth_dir: Path, objects: ObjectsSpec):
        self.source, self.images_dir, self.depth_dir = source, images_dir, depth_dir
        self.objects = objects

    @daft.method(return_dtype=PERCEIVED_TYPE)
    def __call__(self, file_name: str, width: int, height: int, annotations: list) -> dict:
        image_path = self.images_dir / file_name
        uri = str(image_path)
        try:
            data = image_path.read_bytes()
            real = _decoded_size(data)
        except OSError as exc:
            return failed(uri, "annotations", f"cannot read image: {exc.strerror or exc}")
        except (ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            return failed(uri, "annotations", f"cannot read image: {exc}")
        if not _same_shape(real, (width, height)):
            return failed(uri, "annotations", f"image is {real[0]}x{real[1]} (after EXIF orientation) but the instances "
                                              f"file says {width}x{height}: its boxes would not fit; fix width/height")
        depth_path = self.depth_dir / (Path(file_name).stem + DEPTH_SUFFIX[self.source.depth_format])
        try:
            depth = load_depth(depth_path, self.source.depth_format)
        except (OSError, ValueError) as exc:
            return failed(uri, "annotations", f"cannot read depth map: {depth_path}: {exc}")
        if not _same_shape((depth.shape[1], depth.shape[0]), real):
            return failed(uri, "annotations", f"depth map {depth_path.name} is {depth.shape[1]}x{depth.shape[0]}, another "
                                              f"shape than its image ({real[0]}x{real[1]}); give it the image's size")
        found = []  # boxes (and masks) are fractions of the annotated size: they fit the picture at any scale
        for ann in annotations:
            x, y, w, h = ann["bbox"]
            box = (max(x / width, 0.0), max(y / height, 0.0), min((x + w) / width, 1.0), min((y + h) / height, 1.0))
            found.append(Detection(ann["label"], ann["score"], box, ann["mask"]))
        objects = measured_objects(found, depth, (width, height), self.objects.depth_percentile, self.objects.depth_from)
        return image_record(content_id(data), uri, width, height, self.source.depth_kind, "annotations", objects)


def perceive_annotations(source: AnnotationsSource, base_dir: Path, objects: ObjectsSpec, records: list[dict]) -> DataFrame:
    """Records of the annotated images `records` (entries of `read_instances`)."""
    reader = ReadAnnotated(source, (base_dir / source.images).resolve(), (base_dir / source.depth).resolve(), objects)
    df = daft.from_pylist(records).into_batches(STREAM_BATCH)
    df = df.with_column("annotations", col("annotations").cast(_ANNOTATION_TYPE))
    perceived = reader(col("file_name"), col("width").cast("int64"), col("height").cast("int64"), col("annotations"))
    return df.select(perceived.alias("perceived")).select(col("perceived").unnest())
