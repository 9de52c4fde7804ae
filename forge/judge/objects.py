"""A chunk of perception records -> its images and one row per object, with the per-object
columns relations and rules read, and the first object rule each object fails.

Object rules (score, area, truncation, unique label, depth spread) need one object only, so they
are decided here, once per object, before any pair or set is formed. A box an annotation marks as
around several objects (crowd, group-of) or as a picture of one (depiction) is never one object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

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
    "truncated": "box touches the image border, or its annotation says the object is cut off (true/false)",
    "label_count": "how many objects in the image share this label",
}
# image columns an expression may read beside its objects'
IMAGE_COLUMNS: dict[str, str] = {
    "width": "image width in pixels",
    "height": "image height in pixels",
    "fov_scale": "width / fx = 2·tan(horizontal field of view / 2) of the image's camera: metres across the "
                 "image per metre of depth",
    "camera_source": "where the image's camera came from: annotation, records, exif, model or default",
    "gravity_source": "where its gravity came from: annotation, floor_fit or none",
    "objects_over_cap": "objects perception left out because the image had too many (0 for a scene, not a crowd)",
}
OBJECT_COLUMNS: dict[str, str] = {**{name: doc for name, (_, doc) in OBJECT_FIELDS.items() if name != "mask"},
                                  **DERIVED_COLUMNS}  # what relations and rules may read (a mask is pixels)
IMAGE_OUTPUT = ("image_id", "image_uri", "perception", "depth_kind", "source_meta",
                "fx", "fy", "cx", "cy", "camera_source", "gravity_source")  # carried into QA rows


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


METRIC_RULE = "metric_depth"


@dataclass(frozen=True)
class Requirement:
    """What a family's answers need of each object it names and its image (metric depth, a camera that is
    not the default, gravity, 3D numbers), decided before the object rules: a tuple is charged to the
    first requirement one of its objects fails. `test(prefix)` reads the object's columns with `prefix`
    ('' on object rows, 'a_' on a tuple's first object) and its image's columns as they are."""

    name: str
    test: Callable[[str], pl.Expr]


def requirements(spec: Spec, needs_metric: bool, needs_gravity: bool, lifted: tuple[str, ...]) -> list[Requirement]:
    """A relation's requirements, in funnel order."""
    out = []
    if needs_metric:
        out.append(Requirement(METRIC_RULE, lambda prefix: pl.col("metric")))
    if (needs_metric or needs_gravity) and not spec.verify.allow_default_camera:
        out.append(Requirement("default_camera", lambda prefix: pl.col("camera_source") != "default"))
    if needs_gravity:
        out.append(Requirement("no_gravity", lambda prefix: pl.col("gravity_source") != "none"))
    if lifted:
        out.append(Requirement("not_lifted", lambda prefix: pl.all_horizontal(
            [pl.col(f"{prefix}{name}").is_not_null() for name in lifted])))
    return out


FLAGGED_SOURCES = ("annotations", "records")  # where boxes can carry crowd and depiction flags (a dataset's, kept in records)


def object_rules(spec: Spec) -> list[tuple[str, pl.Expr]]:
    """The spec's per-object rules, in funnel order: (name, keep-expression over object columns)."""
    v, c = spec.verify, pl.col
    rules: list[tuple[str, pl.Expr]] = []
    if spec.source.kind in FLAGGED_SOURCES:
        rules += [("crowd", ~c("crowd").fill_null(False)), ("depiction", ~c("depiction").fill_null(False))]
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


def with_camera(images: pl.DataFrame, spec: Spec) -> pl.DataFrame:
    """Images with a camera each: the one perception recorded; a records table's own fx, fy, cx, cy
    (`records`, when the spec's `objects.camera` lists it); else the default camera of the spec's field
    of view. Gravity that nothing recorded is `none`."""
    c = pl.col
    width, height = c("width").cast(pl.Float64), c("height").cast(pl.Float64)
    focal = width / (2 * math.tan(math.radians(spec.objects.horizontal_fov_deg) / 2))
    own = c("fx").is_not_null() & c("fy").is_not_null() & c("cx").is_not_null() & c("cy").is_not_null()
    source = (pl.when(c("camera_source").is_not_null()).then(c("camera_source"))
              .when(own & pl.lit("records" in spec.objects.camera)).then(pl.lit("records")).otherwise(pl.lit("default")))
    images = images.with_columns(camera_source=source, gravity_source=c("gravity_source").fill_null("none"))
    default = c("camera_source") == "default"
    return images.with_columns(fx=pl.when(default).then(focal).otherwise(c("fx")),
                               fy=pl.when(default).then(focal).otherwise(c("fy")),
                               cx=pl.when(default).then(width / 2).otherwise(c("cx")),
                               cy=pl.when(default).then(height / 2).otherwise(c("cy")))


def chunk_objects(records: pl.DataFrame, spec: Spec) -> ChunkObjects:
    """Images and object rows of a chunk of records that were perceived (failed ones carry no objects)."""
    frame = with_camera(records.filter(pl.col("error").is_null()).with_row_index("img"), spec)
    images = frame.select("img", *IMAGE_FIELDS).with_columns(key=image_keys(frame["image_id"]))
    c = pl.col
    w, h = c("width").cast(pl.Float64), c("height").cast(pl.Float64)
    objects = (frame.select("img", "width", "height", "depth_kind", "fx", "camera_source", "gravity_source",
                            c("objects_over_cap").fill_null(0), "objects")
               .explode("objects").drop_nulls("objects").unnest("objects"))
    objects = objects.with_columns(  # idx is the object's position in its image's list, whatever a table says
        idx=pl.Series(within_group_index(objects["img"].to_numpy()), dtype=pl.Int64),
        key=images["key"].gather(objects["img"]),
        cx=(c("x1") + c("x2")) / 2, cy=(c("y1") + c("y2")) / 2, w=c("x2") - c("x1"), h=c("y2") - c("y1"),
        area=(c("x2") - c("x1")) * (c("y2") - c("y1")),
        truncated=(c("x1") * w < TRUNCATION_PX) | (c("y1") * h < TRUNCATION_PX)
        | ((1 - c("x2")) * w < TRUNCATION_PX) | ((1 - c("y2")) * h < TRUNCATION_PX)
        | c("annotated_truncated").fill_null(False),
        fov_scale=w / c("fx"),
        metric=c("depth_kind") == "metric",
    ).drop("depth_kind", "fx")
    label_code = c("label").cast(pl.Categorical).to_physical().cast(pl.UInt64)
    objects = objects.with_columns(
        label_count=pl.len().over(c("img").cast(pl.UInt64) * (1 << 32) + label_code).cast(pl.Int64))
    rules = object_rules(spec)
    return ChunkObjects(images, objects.with_columns(reject=first_failing(rules)), tuple(name for name, _ in rules))
