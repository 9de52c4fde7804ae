"""The per-image perception record every perception input produces (one Daft struct)."""

from __future__ import annotations

from daft import DataType

STREAM_BATCH = 16  # images per streamed batch: progress moves, and Daft spreads batches over workers

OBJECT_TYPE = DataType.struct(
    {
        "idx": DataType.int64(),
        "label": DataType.string(),
        "score": DataType.float64(),
        "x1": DataType.float64(),
        "y1": DataType.float64(),
        "x2": DataType.float64(),
        "y2": DataType.float64(),
        "depth": DataType.float64(),
        "depth_spread": DataType.float64(),
        "depth_check": DataType.float64(),
        "flip_depth": DataType.float64(),
        "flip_cx": DataType.float64(),
    }
)

PERCEIVED_TYPE = DataType.struct(
    {
        "image_id": DataType.string(),
        "image_uri": DataType.string(),
        "width": DataType.int64(),
        "height": DataType.int64(),
        "depth_kind": DataType.string(),
        "perception": DataType.string(),
        "error": DataType.string(),
        "objects": DataType.list(OBJECT_TYPE),
    }
)



def failed(uri: str, perception: str, reason: str) -> dict:
    """A record for an image that could not be perceived: kept, with the reason, never silently lost."""
    return {
        "image_id": None,
        "image_uri": uri,
        "width": None,
        "height": None,
        "depth_kind": None,
        "perception": perception,
        "error": reason,
        "objects": [],
    }
