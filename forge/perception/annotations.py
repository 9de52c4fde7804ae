"""`perception: annotations`: COCO-style boxes plus depth maps from RGB-D, LiDAR or humans.

The JSON is read once when the plan is built (it is the index of the work); pixels and
depth maps are read per image inside a UDF. An image entry may carry its camera (`K`, or `fx`, `fy`,
`cx`, `cy`) and gravity (`gravity`, or `pitch` and `roll`; `camera_height`); without them the photo's
EXIF gives the camera and a floor fit on metric depth gives gravity (`camera.py`, `gravity.py`).
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
from forge.perception.camera import Camera, choose, from_matrix, from_values
from forge.perception.gravity import Gravity, from_pitch_roll, from_vector
from forge.perception.masks import from_coco
from forge.perception.records import PERCEIVED_TYPE, STREAM_BATCH, Detection, failed, image_record, measured_objects
from forge.sources.decoding import UNREADABLE, check_size, oriented_size
from forge.sources.exif import exif_focal
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
    """A JSON number a pixel or a metre can be: JSON integers of any size arrive as Python ints."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 1e12 if isinstance(value, int) else math.isfinite(value) and abs(value) < 1e12


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
        raise ForgeError(f"{path}: cannot read COCO instances JSON: {' '.join(str(exc).split())[:200]}") from None
    except RecursionError:
        raise ForgeError(f"{path}: COCO instances JSON nested too deep to be an instances file") from None
    problems = _Problems(path)
    for key in ("images", "annotations", "categories"):
        if problems.value(data, key, list, "(top level)") is None:
            problems.raise_any()
    names: dict[int, str] = {}
    for i, cat in enumerate(data["categories"]):
        cat_id, name = problems.value(cat, "id", int, f"categories[{i}]"), problems.value(cat, "name", str, f"categories[{i}]")
        if name is not None and not name.strip():
            problems.add(f"categories[{i}].name", "is empty; every category needs the name questions will use")
        if cat_id in names:
            problems.add(f"categories[{i}].id", f"{cat_id!r} is used twice; give each category its own id")
        elif cat_id is not None and name is not None:
            names[cat_id] = name.strip()
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
            images[image_id] = {"file_name": file_name, "width": width, "height": height, "annotations": [],
                                **_geometry(img, width, height, where, problems)}
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
                problems.add(f"{where}.segmentation", str(exc))
        image["annotations"].append({"label": names[category], "score": float(score), "bbox": [float(v) for v in bbox],
                                     "mask": mask})
    problems.raise_any()
    stems: dict[str, int] = {}
    for image in images.values():
        stem = Path(image["file_name"]).stem
        stems[stem] = stems.get(stem, 0) + 1
    for image in images.values():  # a flat depth folder names maps by stem: only where no two images share one
        image["unique_stem"] = stems[Path(image["file_name"]).stem] == 1
    return [images[k] for k in sorted(images, key=str)]


def depth_map_path(depth_dir: Path, file_name: str, depth_format: str, unique_stem: bool) -> Path:
    """Where the depth map of the image `file_name` (relative to the images folder) is: at the same relative
    path under the depth folder (`x/scene.png` -> `depth/x/scene.npy`), or, for a flat depth folder, by the
    image's stem alone when no other image shares it (`scene.png` beside `scene.jpg`, or `x/scene.png`
    beside `y/scene.png`, must mirror the images' folders)."""
    suffix = DEPTH_SUFFIX[depth_format]
    mirrored = depth_dir / Path(file_name).with_suffix(suffix)
    flat = depth_dir / (Path(file_name).stem + suffix)
    return flat if unique_stem and not mirrored.exists() and flat.exists() else mirrored


def inside(folder: Path, path: Path) -> bool:
    """Whether `path`, links followed, lies inside `folder` (a link in a dataset must not read files elsewhere)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # a link loop
        return False


CAMERA_KEYS = ("fx", "fy", "cx", "cy")


def _geometry(entry: dict, width: int | None, height: int | None, where: str, problems: _Problems) -> dict:
    """An image entry's camera ([fx, fy, cx, cy] or None), gravity (up, [x, y, z] or None) and camera
    height (or None), each checked: a bad one is a problem line, never a wrong metric answer."""
    out: dict = {"camera": None, "up": None, "camera_height": None}
    if not isinstance(entry, dict) or not width or not height or width <= 0 or height <= 0:
        return out
    try:
        if "K" in entry:
            camera = from_matrix(entry["K"], width, height)
            out["camera"] = [camera.fx, camera.fy, camera.cx, camera.cy]
        elif any(key in entry for key in CAMERA_KEYS):
            missing = [key for key in CAMERA_KEYS if key not in entry]
            if missing:
                raise ValueError(f"gives {', '.join(k for k in CAMERA_KEYS if k in entry)} without {', '.join(missing)}: "
                                 "give all four (pixels), or K")
            camera = from_values(*(entry[key] for key in CAMERA_KEYS), width, height)
            out["camera"] = [camera.fx, camera.fy, camera.cx, camera.cy]
    except ValueError as exc:
        problems.add(f"{where}.{'K' if 'K' in entry else 'fx'}", f"{exc}")
    height_m = entry.get("camera_height")
    if height_m is not None and (not _finite(height_m) or height_m <= 0):
        problems.add(f"{where}.camera_height", f"{height_m!r} must be the camera's height above the floor in metres (> 0)")
        height_m = None
    try:
        if "gravity" in entry:
            vector = entry["gravity"]
            if not isinstance(vector, list) or len(vector) != 3 or not all(_finite(v) for v in vector):
                raise ValueError(f"{vector!r} must be [x, y, z]: the direction gravity pulls, in camera coordinates "
                                 "(x right, y down, z forward)")
            out["up"] = list(from_vector(tuple(vector), None).up)
        elif "pitch" in entry or "roll" in entry:
            pitch, roll = entry.get("pitch", 0.0), entry.get("roll", 0.0)
            if not _finite(pitch) or not _finite(roll) or abs(pitch) >= 90 or abs(roll) >= 90:
                raise ValueError(f"pitch {pitch!r} and roll {roll!r} must be degrees between -90 and 90 (looking down: "
                                 "pitch > 0)")
            out["up"] = list(from_pitch_roll(pitch, roll, None).up)
    except ValueError as exc:
        problems.add(f"{where}.{'gravity' if 'gravity' in entry else 'pitch'}", str(exc))
    out["camera_height"] = float(height_m) if height_m is not None else None
    return out


SHAPE_TOLERANCE = 0.01  # aspect ratios this close are one shape at two resolutions


def _decoded(data: bytes) -> tuple[tuple[int, int], tuple[float, float] | None]:
    """The picture's (width, height) after EXIF orientation, once its pixels decode (a truncated or
    non-image file raises here, as it would for the models; JPEGs decode at reduced scale), and the
    focal lengths its EXIF gives (`exif_focal`)."""
    with Image.open(io.BytesIO(data)) as img:
        check_size(img)
        size = oriented_size(img)
        focal = exif_focal(img)
        img.draft("RGB", (512, 512))
        img.load()
    return size, focal


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
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth map {path.name} has shape {depth.shape}, expected (height, width) with pixels")
    return depth.astype(np.float32)


@daft.cls
class ReadAnnotated:
    """Reads one annotated image: content id from its bytes, object depth from its depth map, over
    each object's mask when the annotation has a `segmentation`."""

    def __init__(self, source: AnnotationsSource, images_dir: Path, depth_dir: Path, objects: ObjectsSpec):
        self.source, self.images_dir, self.depth_dir = source, images_dir, depth_dir
        self.objects = objects

    @daft.method(return_dtype=PERCEIVED_TYPE)
    def __call__(self, file_name: str, width: int, height: int, annotations: list, camera: list | None,
                 up: list | None, camera_height: float | None, unique_stem: bool) -> dict:
        image_path = self.images_dir / file_name
        uri = str(image_path)
        if not inside(self.images_dir, image_path):
            return failed(uri, "annotations", f"cannot read image: it links outside the images folder {self.images_dir}")
        try:
            data = image_path.read_bytes()
            real, focal = _decoded(data)
        except UNREADABLE as exc:
            return failed(uri, "annotations", f"cannot read image: {getattr(exc, 'strerror', None) or exc}")
        if not _same_shape(real, (width, height)):
            return failed(uri, "annotations", f"image is {real[0]}x{real[1]} (after EXIF orientation) but the instances "
                                              f"file says {width}x{height}: its boxes would not fit; fix width/height")
        depth_path = depth_map_path(self.depth_dir, file_name, self.source.depth_format, unique_stem)
        try:
            if not inside(self.depth_dir, depth_path):
                raise OSError(f"it links outside the depth folder {self.depth_dir}")
            depth = load_depth(depth_path, self.source.depth_format)
        except UNREADABLE as exc:
            return failed(uri, "annotations", f"cannot read depth map: {depth_path}: {exc}")
        if not _same_shape((depth.shape[1], depth.shape[0]), real):
            return failed(uri, "annotations", f"depth map {depth_path.name} is {depth.shape[1]}x{depth.shape[0]}, another "
                                              f"shape than its image ({real[0]}x{real[1]}); give it the image's size")
        found = []  # boxes (and masks) are fractions of the annotated size: they fit the picture at any scale
        for ann in annotations:
            x, y, w, h = ann["bbox"]
            box = (max(x / width, 0.0), max(y / height, 0.0), min((x + w) / width, 1.0), min((y + h) / height, 1.0))
            found.append(Detection(ann["label"], ann["score"], box, ann["mask"]))
        scale = width / real[0]  # EXIF describes the file's pixels; boxes and the camera the annotated size
        candidates = {"annotation": Camera(*camera, "annotation") if camera is not None else None,
                      "exif": Camera.centred(width, height, focal[0] * scale, focal[1] * scale, "exif") if focal else None}
        chosen = choose(tuple(self.objects.camera), candidates, width, height, self.objects.horizontal_fov_deg)
        gravity = Gravity(tuple(up), camera_height, "annotation") if up is not None else None
        objects, geometry = measured_objects(found, depth, (width, height), self.objects.depth_percentile,
                                             self.objects.depth_from, chosen, gravity,
                                             fit_gravity=self.source.depth_kind == "metric")
        return image_record(content_id(data), uri, width, height, self.source.depth_kind, "annotations", objects, geometry)


def perceive_annotations(source: AnnotationsSource, base_dir: Path, objects: ObjectsSpec, records: list[dict]) -> DataFrame:
    """Records of the annotated images `records` (entries of `read_instances`)."""
    reader = ReadAnnotated(source, (base_dir / source.images).resolve(), (base_dir / source.depth).resolve(), objects)
    df = daft.from_pylist(records).into_batches(STREAM_BATCH)
    df = df.with_columns({"annotations": col("annotations").cast(_ANNOTATION_TYPE),
                          "camera": col("camera").cast(DataType.list(DataType.float64())),
                          "up": col("up").cast(DataType.list(DataType.float64())),
                          "camera_height": col("camera_height").cast(DataType.float64())})
    perceived = reader(col("file_name"), col("width").cast("int64"), col("height").cast("int64"), col("annotations"),
                       col("camera"), col("up"), col("camera_height"), col("unique_stem"))
    return df.select(perceived.alias("perceived")).select(col("perceived").unnest())
