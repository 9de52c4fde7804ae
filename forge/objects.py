"""Per-image object lists -> one row per object, with geometry columns as expressions.

These columns (see `forge.spec.expressions.OBJECT_COLUMNS`) are what relations and
verification rules may refer to, prefixed `a_`/`b_` once objects are paired.
"""

from __future__ import annotations

import math

from daft import DataFrame, Window, col, lit

TRUNCATION_PX = 1.0  # a box edge within this many pixels of the border counts as cut off


def object_rows(perceived: DataFrame, horizontal_fov_deg: float) -> DataFrame:
    """Explode `objects` and derive centre, size, area, truncation and per-image label counts.

    `fov_scale` = 2·tan(fov/2) turns a box's width fraction times depth into metres.
    """
    df = perceived.where(col("error").is_null()).select(
        "image_id", "image_uri", "width", "height", "depth_kind", "perception", col("objects").explode()
    )
    df = df.where(col("objects").not_null()).select(
        "image_id", "image_uri", "width", "height", "depth_kind", "perception", col("objects").unnest()
    )
    w, h = col("width").cast("float64"), col("height").cast("float64")
    return df.with_columns(
        {
            "fov_scale": lit(2 * math.tan(math.radians(horizontal_fov_deg) / 2)),
            "cx": (col("x1") + col("x2")) / 2,
            "cy": (col("y1") + col("y2")) / 2,
            "w": col("x2") - col("x1"),
            "h": col("y2") - col("y1"),
            "area": (col("x2") - col("x1")) * (col("y2") - col("y1")),
            "truncated": (col("x1") * w < TRUNCATION_PX)
            | (col("y1") * h < TRUNCATION_PX)
            | ((1 - col("x2")) * w < TRUNCATION_PX)
            | ((1 - col("y2")) * h < TRUNCATION_PX),
            "label_count": col("idx").count().over(Window().partition_by("image_id", "label")).cast("int64"),
        }
    )
