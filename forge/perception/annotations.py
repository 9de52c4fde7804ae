"""`perception: annotations`: the human-drawn boxes of an annotated dataset (`forge/sources/annotated.py`)
plus depth maps from RGB-D, LiDAR or humans; and what both perception paths take from an annotation.

The staged annotation table is read a window of images at a time; pixels and depth maps are read per
image inside a UDF. An image entry may carry its camera (`K`, or `fx`, `fy`, `cx`, `cy`) and gravity
(`gravity`, or `pitch` and `roll`; `camera_height`), checked when the file is staged (`check_image`);
without them the photo's EXIF gives the camera and a floor fit on metric depth gives gravity
(`camera.py`, `gravity.py`). Masks (COCO `segmentation`) are decoded per image: one that does not fit
its image makes that image an `errors` row.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import daft
import numpy as np
import pyarrow as pa
from daft import DataFrame, col
from PIL import Image

from forge.perception.camera import Camera, choose, from_matrix, from_values
from forge.perception.gravity import Gravity, from_pitch_roll, from_vector
from forge.perception.masks import decode, encode, from_coco, resized
from forge.perception.records import PERCEIVED_TYPE, STREAM_BATCH, Detection, failed, image_record, measured_objects
from forge.sources.decoding import UNREADABLE, check_size, oriented_size, reason
from forge.sources.exif import exif_focal
from forge.sources.identity import content_id
from forge.spec.schema import AnnotationsSource, ObjectsSpec

DEPTH_SUFFIX = {"png16_mm": ".png", "npy_m": ".npy"}


def _finite(value: object) -> bool:
    """A JSON number a pixel or a metre can be: JSON integers of any size arrive as Python ints."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 1e12 if isinstance(value, int) else math.isfinite(value) and abs(value) < 1e12


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


def check_image(entry: dict, width: int, height: int, where: str) -> list[tuple[str, str]]:
    """Problems of an image entry's camera and gravity, as (key path, message): what the annotation
    staging reports, one line each, before any work (a bad one would be a wrong metric answer)."""
    problems: list[tuple[str, str]] = []
    _geometry(entry, width, height, where, problems)
    return problems


def geometry(extras: str | None, width: int | None, height: int | None) -> dict:
    """An image's camera, gravity and camera height from its entry's camera and gravity keys (checked
    when staged), as `_geometry` reads them."""
    return _geometry(json.loads(extras) if extras else {}, width, height, "", [])


def _geometry(entry: dict, width: int | None, height: int | None, where: str, problems: list) -> dict:
    """An image entry's camera ([fx, fy, cx, cy] or None), gravity (up, [x, y, z] or None) and camera
    height (or None), each checked: a bad one is a problem, never a wrong metric answer."""
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
        problems.append((f"{where}.{'K' if 'K' in entry else 'fx'}", f"{exc}"))
    height_m = entry.get("camera_height")
    if height_m is not None and (not _finite(height_m) or height_m <= 0):
        problems.append((f"{where}.camera_height", f"{height_m!r} must be the camera's height above the floor in "
                                                   "metres (> 0)"))
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
        problems.append((f"{where}.{'gravity' if 'gravity' in entry else 'pitch'}", str(exc)))
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


def shape_problem(real: tuple[int, int], annotated: tuple[int, int]) -> str | None:
    """Why an image's boxes would not fit the picture: another aspect ratio than its annotation states
    (another resolution of the same shape is fine: boxes and masks are fractions)."""
    if _same_shape(real, annotated):
        return None
    return (f"image is {real[0]}x{real[1]} (after EXIF orientation) but the instances file says "
            f"{annotated[0]}x{annotated[1]}: its boxes would not fit; fix width/height")


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


def detections(objects: list[dict], height: int, width: int) -> list[Detection]:
    """An image's annotated objects as detections, masks decoded to RLE counts at the annotated size;
    ValueError naming the annotation whose mask does not fit the image."""
    found = []
    for obj in objects:
        mask = None
        if obj["segmentation"] is not None:
            try:
                mask = from_coco(json.loads(obj["segmentation"]), height, width)
            except (ValueError, TypeError, KeyError) as exc:
                raise ValueError(f"annotations[{obj['position']}].segmentation: {exc}") from None
        found.append(Detection(obj["label"], obj["score"], (obj["x1"], obj["y1"], obj["x2"], obj["y2"]), mask,
                               obj["annotation_id"], obj["crowd"], obj["depiction"], obj["truncated"]))
    return found


def cached_detections(objects: list[dict], annotated: tuple[int, int], real: tuple[int, int]) -> list[dict]:
    """An image's annotated objects as the perception cache keeps detections (`cache.DETECTION_TYPE`), for
    `grounding: annotations`: masks decoded at the annotated size and, for a picture stored at another
    resolution of the same shape, resampled to the picture's (models and the cache work at its size);
    ValueError for a picture of another shape, or a mask that does not fit."""
    problem = shape_problem(real, annotated)
    if problem is not None:
        raise ValueError(problem)
    out = []
    for found in detections(objects, annotated[1], annotated[0]):
        mask = found.mask
        if mask is not None and real != annotated:
            mask = encode(resized(decode(mask, annotated[1], annotated[0]), (real[1], real[0])))
        out.append({"label": found.label, "score": found.score, "x1": found.box[0], "y1": found.box[1],
                    "x2": found.box[2], "y2": found.box[3], "annotation_id": found.annotation_id, "crowd": found.crowd,
                    "depiction": found.depiction, "truncated": found.truncated, "mask": mask})
    return out


@daft.cls
class ReadAnnotated:
    """Reads one annotated image: content id from its bytes, object depth from its depth map, over
    each object's mask when the annotation has a `segmentation`."""

    def __init__(self, source: AnnotationsSource, images_dir: Path, depth_dir: Path, objects: ObjectsSpec):
        self.source, self.images_dir, self.depth_dir = source, images_dir, depth_dir
        self.objects = objects

    @daft.method(return_dtype=PERCEIVED_TYPE)
    def __call__(self, file_name: str, width: int | None, height: int | None, extras: str | None,
                 not_exhaustive: list, objects: list, unique_stem: bool) -> dict:
        image_path = self.images_dir / file_name
        uri = str(image_path)
        if not inside(self.images_dir, image_path):
            return failed(uri, "annotations", f"cannot read image: it links outside the images folder {self.images_dir}")
        try:
            data = image_path.read_bytes()
            real, focal = _decoded(data)
        except UNREADABLE as exc:
            return failed(uri, "annotations", f"cannot read image: {reason(exc)}")
        width, height = (width, height) if width is not None else real  # Open Images states no size: the file's
        problem = shape_problem(real, (width, height))
        if problem is not None:
            return failed(uri, "annotations", problem)
        depth_path = depth_map_path(self.depth_dir, file_name, self.source.depth_format, unique_stem)
        try:
            if not inside(self.depth_dir, depth_path):
                raise OSError(f"it links outside the depth folder {self.depth_dir}")
            depth = load_depth(depth_path, self.source.depth_format)
        except UNREADABLE as exc:
            return failed(uri, "annotations", f"cannot read depth map: {depth_path}: {reason(exc)}")
        if not _same_shape((depth.shape[1], depth.shape[0]), real):
            return failed(uri, "annotations", f"depth map {depth_path.name} is {depth.shape[1]}x{depth.shape[0]}, another "
                                              f"shape than its image ({real[0]}x{real[1]}); give it the image's size")
        try:  # boxes (and masks) are fractions of the annotated size: they fit the picture at any scale
            found = detections(objects, height, width)
        except ValueError as exc:
            return failed(uri, "annotations", f"mask does not fit the image: {exc}")
        given = geometry(extras, width, height)
        scale = width / real[0]  # EXIF describes the file's pixels; boxes and the camera the annotated size
        candidates = {"annotation": Camera(*given["camera"], "annotation") if given["camera"] is not None else None,
                      "exif": Camera.centred(width, height, focal[0] * scale, focal[1] * scale, "exif") if focal else None}
        chosen = choose(tuple(self.objects.camera), candidates, width, height, self.objects.horizontal_fov_deg)
        gravity = Gravity(tuple(given["up"]), given["camera_height"], "annotation") if given["up"] is not None else None
        measured, geometry_fields = measured_objects(found, depth, (width, height), self.objects.depth_percentile,
                                                     self.objects.depth_from, chosen, gravity,
                                                     fit_gravity=self.source.depth_kind == "metric")
        return image_record(content_id(data), uri, width, height, self.source.depth_kind, "annotations", measured,
                            geometry_fields, not_exhaustive=not_exhaustive)


def perceive_annotations(source: AnnotationsSource, base_dir: Path, objects: ObjectsSpec, rows: pa.Table) -> DataFrame:
    """Records of the annotated images `rows` (a window of the staged table, `AnnotatedImages.read`)."""
    reader = ReadAnnotated(source, (base_dir / source.images).resolve(), (base_dir / source.depth).resolve(), objects)
    df = daft.from_arrow(rows).into_batches(STREAM_BATCH)
    perceived = reader(col("file_name"), col("width"), col("height"), col("extras"), col("not_exhaustive"), col("objects"),
                       col("unique_stem"))
    return df.select(perceived.alias("perceived")).select(col("perceived").unnest())
