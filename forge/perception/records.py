"""The perception record: one per image, the same from every perception input.

This module owns its schema. Synthetic scenes, annotations and models build records with
`object_record` / `image_record` / `failed`; a table of records made elsewhere (`source: records`)
must have these columns; the judge reads nothing else.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from daft import DataType

from forge.perception.depth_stats import depth_spread, object_depth

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
}
IMAGE_FIELDS: dict[str, tuple[pa.DataType, str]] = {
    "image_id": (pa.string(), "content id: hash of the image's bytes (null when the image failed)"),
    "image_uri": (pa.string(), "where the image is: a path, URL or synthetic:// URI"),
    "width": (pa.int64(), "image width in pixels, after EXIF orientation"),
    "height": (pa.int64(), "image height in pixels"),
    "depth_kind": (pa.string(), "metric (metres) or relative"),
    "perception": (pa.string(), "what perceived it: synthetic, annotations, or the model ids"),
    "error": (pa.string(), "why the image could not be perceived; null when it was"),
}
OBJECT_STRUCT = pa.struct([pa.field(name, kind) for name, (kind, _) in OBJECT_FIELDS.items()])
RECORD_SCHEMA = pa.schema([pa.field(name, kind) for name, (kind, _) in IMAGE_FIELDS.items()]
                          + [pa.field("objects", pa.list_(OBJECT_STRUCT))])
PERCEIVED_TYPE = DataType.from_arrow_type(pa.struct(list(RECORD_SCHEMA)))


def object_record(idx: int, label: str, score: float, box: Box, depth: np.ndarray, percentile: float,
                  **checks: float | None) -> dict:
    """One object, its depth statistics measured on `depth` (checks: depth_check, flip_depth, flip_cx)."""
    record = {"idx": idx, "label": label, "score": score, "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3],
              "depth": object_depth(depth, box, percentile), "depth_spread": depth_spread(depth, box),
              "depth_check": None, "flip_depth": None, "flip_cx": None}
    unknown = set(checks) - {"depth_check", "flip_depth", "flip_cx"}
    assert not unknown, f"not object fields: {unknown}"
    record.update(checks)
    return record


def image_record(image_id: str, uri: str, width: int, height: int, depth_kind: str, perception: str,
                 objects: list[dict]) -> dict:
    return {"image_id": image_id, "image_uri": uri, "width": width, "height": height, "depth_kind": depth_kind,
            "perception": perception, "error": None, "objects": objects}


def failed(uri: str, perception: str, reason: str) -> dict:
    """A record for an image that could not be perceived: kept, with the reason, never silently lost."""
    return {"image_id": None, "image_uri": uri, "width": None, "height": None, "depth_kind": None,
            "perception": perception, "error": reason, "objects": []}
