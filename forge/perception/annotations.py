"""`perception: annotations`: COCO-style boxes plus depth maps from RGB-D, LiDAR or humans.

The JSON is read once when the plan is built (it is the index of the work); pixels and
depth maps are read per image inside a UDF.
"""

from __future__ import annotations

import json
from pathlib import Path

import daft
import numpy as np
from daft import DataFrame, DataType, col
from PIL import Image

from forge.errors import ForgeError
from forge.perception.masks import from_coco
from forge.perception.records import PERCEIVED_TYPE, STREAM_BATCH, Detection, failed, image_record, measured_objects
from forge.spec.schema import AnnotationsSource, ObjectsSpec
from udfs.images import content_id

DEPTH_SUFFIX = {"png16_mm": ".png", "npy_m": ".npy"}

_ANNOTATION_TYPE = DataType.list(
    DataType.struct({"label": DataType.string(), "score": DataType.float64(), "bbox": DataType.list(DataType.float64()),
                     "mask": DataType.string()})
)


def _require(record: dict, key: str, kind: type | tuple, where: str, file: Path):
    if not isinstance(record, dict) or key not in record:
        raise ForgeError(f"{file}: {where}: missing {key!r} (COCO instances format)")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ForgeError(f"{file}: {where}.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def read_instances(path: Path) -> list[dict]:
    """Parse a COCO instances JSON into one record per image with its labelled boxes (pixels)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ForgeError(f"{path}: cannot read COCO instances JSON: {exc}") from None
    for key in ("images", "annotations", "categories"):
        _require(data, key, list, "(top level)", path)
    names = {}
    for i, cat in enumerate(data["categories"]):
        names[_require(cat, "id", int, f"categories[{i}]", path)] = _require(cat, "name", str, f"categories[{i}]", path)
    images = {}
    for i, img in enumerate(data["images"]):
        image_id = _require(img, "id", (int, str), f"images[{i}]", path)
        images[image_id] = {
            "file_name": _require(img, "file_name", str, f"images[{i}]", path),
            "width": _require(img, "width", int, f"images[{i}]", path),
            "height": _require(img, "height", int, f"images[{i}]", path),
            "annotations": [],
        }
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        image_id = _require(ann, "image_id", (int, str), where, path)
        category = _require(ann, "category_id", int, where, path)
        bbox = _require(ann, "bbox", list, where, path)
        if image_id not in images:
            raise ForgeError(f"{path}: {where}.image_id: {image_id!r} is not in images")
        if category not in names:
            raise ForgeError(f"{path}: {where}.category_id: {category!r} is not in categories")
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox) or bbox[2] <= 0 or bbox[3] <= 0:
            raise ForgeError(f"{path}: {where}.bbox: expected [x, y, width, height] in pixels with width, height > 0, got {bbox!r}")
        score = ann.get("score", 1.0)
        mask = None
        if ann.get("segmentation"):
            image = images[image_id]
            try:
                mask = from_coco(ann["segmentation"], image["height"], image["width"])
            except (TypeError, ValueError, KeyError) as exc:
                raise ForgeError(f"{path}: {where}.segmentation: not COCO polygons or RLE ({exc})") from None
        images[image_id]["annotations"].append({"label": names[category], "score": float(score),
                                                "bbox": [float(v) for v in bbox], "mask": mask})
    return [images[k] for k in sorted(images, key=str)]


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
        except OSError as exc:
            return failed(uri, "annotations", f"cannot read image: {exc.strerror or exc}")
        depth_path = self.depth_dir / (Path(file_name).stem + DEPTH_SUFFIX[self.source.depth_format])
        try:
            depth = load_depth(depth_path, self.source.depth_format)
        except (OSError, ValueError) as exc:
            return failed(uri, "annotations", f"cannot read depth map: {depth_path}: {exc}")
        found = []
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
