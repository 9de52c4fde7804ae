"""The perception record: one per image, the same from every perception input.

This module owns its schema. Synthetic scenes, annotations and models build records with
`measured_objects` / `image_record` / `failed`; a table of records made elsewhere (`source: records`)
must have these columns; the judge reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from daft import DataType

from forge.perception.camera import Camera
from forge.perception.depth_stats import MAX_OBJECTS, BoxLayout, measure
from forge.perception.gravity import NO_GRAVITY, Gravity, fit_floor
from forge.perception.lifting import lift
from forge.perception.masks import decode, resized

STREAM_BATCH = 16  # images per streamed batch: progress moves, and Daft spreads batches over workers

Box = tuple[float, float, float, float]

# name -> (type, meaning); box coordinates are fractions of the image, origin top-left
OBJECT_FIELDS: dict[str, tuple[pa.DataType, str]] = {
    "idx": (pa.int64(), "position of the object in its image's object list"),
    "label": (pa.string(), "object name, e.g. 'red cube'"),
    "score": (pa.float64(), "detector confidence (1.0 for annotations without scores and synthetic data)"),
    "x1": (pa.float64(), "box left, fraction of image width"),
    "y1": (pa.float64(), "box top, fraction of image height"),
    "x2": (pa.float64(), "box right, fraction of image width"),
    "y2": (pa.float64(), "box bottom, fraction of image height"),
    "depth": (pa.float64(), "front-surface depth: distance from the camera, larger = farther (null: no valid depth)"),
    "depth_spread": (pa.float64(), "(p75 - p25) / p50 of depth in the box's central half: large when the depth is unreliable"),
    "depth_check": (pa.float64(), "front-surface depth from perception.depth_check (null without one)"),
    "flip_depth": (pa.float64(), "depth measured in the mirrored image (perception.flip_check; null when not found again)"),
    "flip_cx": (pa.float64(), "box centre x of the object's detection in the mirrored image (null when not found again)"),
    "occlusion": (pa.float64(), "fraction of the box covered by the boxes of objects in front of it"),
    "depth_source": (pa.string(), "which pixels the depth came from: mask, box_visible (the box minus nearer "
                                  "boxes) or box"),
    "mask": (pa.string(), "the object's pixels as COCO RLE counts at the image's size (null without a mask)"),
    # lifted to 3D from the object's pixels with the image's camera (perception/lifting.py); depth units
    # (metres for metric depth); null where too few points remain or, for the gravity-frame ones, without gravity
    "x3d": (pa.float64(), "3D centroid in the camera frame: x right"),
    "y3d": (pa.float64(), "3D centroid in the camera frame: y down"),
    "z3d": (pa.float64(), "3D centroid in the camera frame: z along the optical axis"),
    "across": (pa.float64(), "centroid on the floor plane (gravity frame): across the view, right positive"),
    "along": (pa.float64(), "centroid on the floor plane (gravity frame): along the view, away from the camera"),
    "elevation": (pa.float64(), "centroid height above the floor"),
    "width3d": (pa.float64(), "extent across the view, in the gravity frame"),
    "height3d": (pa.float64(), "extent along gravity"),
    "bottom": (pa.float64(), "lowest point's height above the floor"),
    "top": (pa.float64(), "highest point's height above the floor"),
    "points3d": (pa.int64(), "3D points the lifted numbers come from (0: not lifted)"),
    # what an annotation says of the object (null for detections)
    "annotation_id": (pa.string(), "the dataset's id of the object's annotation (COCO `id`; Open Images: its CSV row)"),
    "crowd": (pa.bool_(), "a box around several objects (COCO iscrowd, Open Images IsGroupOf): never one object"),
    "depiction": (pa.bool_(), "a picture of the object, not the object (Open Images IsDepiction)"),
    "annotated_truncated": (pa.bool_(), "the annotation says the object is cut by the image border (IsTruncated)"),
}
ANNOTATION_FIELDS = ("annotation_id", "crowd", "depiction", "annotated_truncated")
LIFTED_FIELDS = ("x3d", "y3d", "z3d", "across", "along", "elevation", "width3d", "height3d", "bottom", "top", "points3d")
OPTIONAL_OBJECT_FIELDS = ("depth_check", "flip_depth", "flip_cx", "occlusion", "depth_source", "mask",
                          *LIFTED_FIELDS, *ANNOTATION_FIELDS)  # null if absent
IMAGE_FIELDS: dict[str, tuple[pa.DataType, str]] = {
    "image_id": (pa.string(), "content id: hash of the image's bytes (null when the image failed)"),
    "image_uri": (pa.string(), "where the image is: a path, URL or synthetic:// URI"),
    "width": (pa.int64(), "image width in pixels, after EXIF orientation"),
    "height": (pa.int64(), "image height in pixels"),
    "depth_kind": (pa.string(), "metric (metres) or relative"),
    "perception": (pa.string(), "what perceived it: synthetic, annotations, or the model ids"),
    "error": (pa.string(), "why the image could not be perceived; null when it was"),
    "source_meta": (pa.string(), "the source's own fields for this image (source.metadata) as a JSON object; null without"),
    "fx": (pa.float64(), "focal length in pixels along x, of the upright picture"),
    "fy": (pa.float64(), "focal length in pixels along y"),
    "cx": (pa.float64(), "principal point x in pixels"),
    "cy": (pa.float64(), "principal point y in pixels"),
    "camera_source": (pa.string(), "where the camera came from: annotation, records, exif, model or default"),
    "up_x": (pa.float64(), "up (opposite to gravity) in camera coordinates: x"),
    "up_y": (pa.float64(), "up in camera coordinates: y (about -1 for a level camera)"),
    "up_z": (pa.float64(), "up in camera coordinates: z"),
    "camera_height": (pa.float64(), "the camera's height above the floor (null: no floor known)"),
    "gravity_source": (pa.string(), "where gravity came from: annotation, floor_fit or none"),
    "floor_share": (pa.float64(), "the floor fit's inlier share of the background pixels (floor_fit only)"),
    "objects_over_cap": (pa.int64(), f"objects left out because the image had more than {MAX_OBJECTS} (the lowest "
                                     "scored): a crowd, not a scene; counting skips such images"),
    "not_exhaustive": (pa.list_(pa.string()), "labels whose objects the annotations do not list exhaustively (LVIS): "
                                              "counting does not ask about them"),
}
CAMERA_FIELDS = ("fx", "fy", "cx", "cy", "camera_source")
GRAVITY_FIELDS = ("up_x", "up_y", "up_z", "camera_height", "gravity_source", "floor_share")
OPTIONAL_IMAGE_FIELDS = ("source_meta", *CAMERA_FIELDS, *GRAVITY_FIELDS, "objects_over_cap", "not_exhaustive")  # null where a table of records lacks them
OBJECT_STRUCT = pa.struct([pa.field(name, kind) for name, (kind, _) in OBJECT_FIELDS.items()])
RECORD_SCHEMA = pa.schema([pa.field(name, kind) for name, (kind, _) in IMAGE_FIELDS.items()]
                          + [pa.field("objects", pa.list_(OBJECT_STRUCT))])
PERCEIVED_TYPE = DataType.from_arrow_type(pa.struct(list(RECORD_SCHEMA)))


@dataclass(frozen=True)
class Detection:
    """What perception found of one object before its depth is measured."""

    label: str
    score: float
    box: Box  # normalized x1, y1, x2, y2
    mask: str | None = None  # RLE counts at the image's size
    annotation_id: str | None = None  # what an annotation says of it (`ANNOTATION_FIELDS`); None for a detection
    crowd: bool | None = None
    depiction: bool | None = None
    truncated: bool | None = None


def measured_objects(detections: list[Detection], depth: np.ndarray, image_size: tuple[int, int], percentile: float,
                     depth_from: str, camera: Camera, gravity: Gravity | None, fit_gravity: bool,
                     check: np.ndarray | None = None,
                     flips: list[tuple[float | None, float | None]] | None = None) -> tuple[list[dict], dict]:
    """The object records of one image and its geometry fields (camera and gravity): each detection with
    its depth statistics measured on `depth` (and on the second depth model's map `check`), jointly,
    since what is in front decides them, and lifted to 3D with `camera`. Gravity is `gravity` when the
    source gives it, else the floor fitted on `depth` when `fit_gravity` (metric depth), else none.
    An image with more than `MAX_OBJECTS` detections keeps its best scored ones (in their order)."""
    width, height = image_size
    over = len(detections) - MAX_OBJECTS
    if over > 0:
        best = sorted(sorted(range(len(detections)), key=lambda i: -detections[i].score)[:MAX_OBJECTS])
        detections = [detections[i] for i in best]

    def masks_at(shape: tuple[int, int]) -> list:
        return [resized(decode(d.mask, height, width), shape) if d.mask is not None else None for d in detections]

    boxes = [d.box for d in detections]
    measured, pixels = measure(depth, boxes, masks_at(depth.shape), percentile, depth_from)
    checked = measure(check, boxes, masks_at(check.shape), percentile, depth_from)[0] if check is not None else None
    intrinsics = camera.at(width, height, depth.shape[1], depth.shape[0])
    if fit_gravity and (gravity is None or gravity.camera_height is None):
        gravity = fit_floor(depth, intrinsics, BoxLayout(boxes, depth.shape).covered(), gravity) or gravity
    fronts = np.array([m["depth"] if m["depth"] is not None else np.nan for m in measured], dtype=np.float64)
    masked = np.array([m["depth_source"] == "mask" for m in measured], dtype=bool)
    lifted = lift(depth, intrinsics, *pixels, fronts, masked, gravity)
    records = []
    for i, (d, m) in enumerate(zip(detections, measured)):
        flip = flips[i] if flips is not None else (None, None)
        records.append({"idx": i, "label": d.label, "score": d.score, "x1": d.box[0], "y1": d.box[1], "x2": d.box[2],
                        "y2": d.box[3], **m, "depth_check": checked[i]["depth"] if checked is not None else None,
                        "flip_depth": flip[0], "flip_cx": flip[1], "mask": d.mask,
                        **{name: _value(lifted[name][i]) for name in LIFTED_FIELDS}, "annotation_id": d.annotation_id,
                        "crowd": d.crowd, "depiction": d.depiction, "annotated_truncated": d.truncated})
    return records, {**camera.fields(), **(gravity.fields() if gravity is not None else NO_GRAVITY),
                     "objects_over_cap": max(over, 0)}


def _value(value: np.generic) -> float | int | None:
    """A lifted number as the record stores it: NaN (unknown) becomes null."""
    number = value.item()
    return None if isinstance(number, float) and not np.isfinite(number) else number


def image_record(image_id: str, uri: str, width: int, height: int, depth_kind: str, perception: str,
                 objects: list[dict], geometry: dict, source_meta: str | None = None,
                 not_exhaustive: list[str] | None = None) -> dict:
    """A perceived image's record; `geometry` is what `measured_objects` says of its camera and gravity."""
    return {"image_id": image_id, "image_uri": uri, "width": width, "height": height, "depth_kind": depth_kind,
            "perception": perception, "error": None, "source_meta": source_meta, **geometry,
            "not_exhaustive": not_exhaustive, "objects": objects}


def failed(uri: str, perception: str, reason: str) -> dict:
    """A record for an image that could not be perceived: kept, with the reason, never silently lost."""
    return {"image_id": None, "image_uri": uri, "width": None, "height": None, "depth_kind": None,
            "perception": perception, "error": reason, "source_meta": None,
            **dict.fromkeys(CAMERA_FIELDS + GRAVITY_FIELDS), "objects_over_cap": None, "not_exhaustive": None,
            "objects": []}
