"""A chunk of perception records -> its images and one row per object, with the per-object
columns relations and rules read, and the first object rule each object fails.

Object rules (score, area, truncation, unique label, depth spread) need one object only, so they
are decided here, once per object, before any pair or set is formed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from forge.judge.hashing import image_keys
from forge.perception.records import IMAGE_FIELDS, OBJECT_FIELDS
from forge.spec.schema import Spec

TRUNCATION_PX = 1.0  # a box edge within this many pixels of the border counts as cut off

# columns computed per object, beside the record's own fields (perception/records.py)
DERIVED_COLUMNS: dict[str, str] = {
    "cx": "box centre x, fraction of image width",
    "cy": "box centre y, fraction of image height",
    "w": "box width, fraction of image width",
    "h": "box height, fraction of image height",
    "area": "box area, fraction of image area",
    "truncated": "box touches the image border (true/false)",
    "label_count": "how many objects in the image share this label",
}
# image columns an expression may read beside its objects'
IMAGE_COLUMNS: dict[str, str] = {
    "width": "image width in pixels",
    "height": "image height in pixels",
    "fov_scale": "2·tan(horizontal field of view / 2): metres across the image per metre of depth",
}
OBJECT_COLUMNS: dict[str, str] = {**{name: doc for name, (_, doc) in OBJECT_FIELDS.items() if name != "mask"},
                                  **DERIVED_COLUMNS}  # what relations and rules may read (a mask is pixels)
IMAGE_OUTPUT = ("image_id", "image_uri", "perception", "depth_kind", "source_meta")  # carried into QA rows


@dataclass(frozen=True)
class ChunkObjects:
    """`images`: one row per perceived image (`img` = its row), with `key`, a stable u64 of its id.
    `objects`: one row per object, in (img, idx) order, with `img`, `key`, `metric` (metric depth),
    the image columns, every object column and `reject` (1-based index of the first object rule it
    fails, 0 when it passes them all)."""

    images: pl.DataFrame
    objects: pl.DataFrame
    object_rules: tuple[str, ...]
    memo: dict = field(default_factory=dict, compare=False)  # candidates shared by families of a chunk


def object_rules(spec: Spec) -> list[tuple[str, pl.Expr]]:
    """The spec's per-object rules, in funnel order: (name, keep-expression over object columns)."""
    v, c = spec.verify, pl.col
    rules: list[tuple[str, pl.Expr]] = []
    if v.min_score > 0:
        rules.append(("min_score", c("score") >= v.min_score))
    if v.min_area > 0:
        rules.append(("min_area", c("area") >= v.min_area))
    if v.max_area < 1:
        rules.append(("max_area", c("area") <= v.max_area))
    if v.drop_truncated:
        rules.append(("truncated", ~c("truncated")))
    if v.unique_labels:
        rules.append(("unique_labels", c("label_count") == 1))
    if v.max_depth_spread is not None:
        rules.append(("depth_spread", c("depth_spread") <= v.max_depth_spread))
    if v.max_occlusion is not None:  # a mask gives the object's own pixels: nothing in front can spoil its depth
        rules.append(("occluded", (c("depth_source") == "mask") | c("occlusion").is_null()
                      | (c("occlusion") <= v.max_occlusion)))
    return rules


def within_group_index(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted array."""
    if groups.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
    lengths = np.diff(np.append(starts, groups.size))
    return np.arange(groups.size) - np.repeat(starts, lengths)


def first_failing(rules: list[tuple[str, pl.Expr]]) -> pl.Expr:
    """1-based index of the first rule a row fails (a null test fails), 0 when it passes all."""
    code: pl.Expr = pl.lit(0, pl.Int32)
    for i in range(len(rules), 0, -1):
        code = pl.when(~rules[i - 1][1].fill_null(False)).then(pl.lit(i, pl.Int32)).otherwise(code)
    return code


def chunk_objects(records: pl.DataFrame, spec: Spec) -> ChunkObjects:
    """Images and object rows of a chunk of records that were perceived (failed ones carry no objects)."""
    frame = records.filter(pl.col("error").is_null()).with_row_index("img")
    images = frame.select("img", *IMAGE_FIELDS).with_columns(key=image_keys(frame["image_id"]))
    c = pl.col
    w, h = c("width").cast(pl.Float64), c("height").cast(pl.Float64)
    objects = (frame.select("img", "width", "height", "depth_kind", "objects").explode("objects")
               .drop_nulls("objects").unnest("objects"))
    objects = objects.with_columns(  # idx is the object's position in its image's list, whatever a table says
        idx=pl.Series(within_group_index(objects["img"].to_numpy()), dtype=pl.Int64),
        key=images["key"].gather(objects["img"]),
        cx=(c("x1") + c("x2")) / 2, cy=(c("y1") + c("y2")) / 2, w=c("x2") - c("x1"), h=c("y2") - c("y1"),
        area=(c("x2") - c("x1")) * (c("y2") - c("y1")),
        truncated=(c("x1") * w < TRUNCATION_PX) | (c("y1") * h < TRUNCATION_PX)
        | ((1 - c("x2")) * w < TRUNCATION_PX) | ((1 - c("y2")) * h < TRUNCATION_PX),
        fov_scale=pl.lit(2 * math.tan(math.radians(spec.objects.horizontal_fov_deg) / 2)),
        metric=c("depth_kind") == "metric",
    ).drop("depth_kind")
    label_code = c("label").cast(pl.Categorical).to_physical().cast(pl.UInt64)
    objects = objects.with_columns(
        label_count=pl.len().over(c("img").cast(pl.UInt64) * (1 << 32) + label_code).cast(pl.Int64))
    rules = object_rules(spec)
    return ChunkObjects(images, objects.with_columns(reject=first_failing(rules)), tuple(name for name, _ in rules))
