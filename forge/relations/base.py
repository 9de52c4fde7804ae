"""The relation record and the geometry shared by relations (boxes in [0,1000], back-projection)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from daft import Expression, col, lit

import daft.functions as F


@dataclass(frozen=True)
class Relation:
    """`shape`: "tuple" (a, b, c objects), "set" (3-5 objects of an image) or "group" (same-label objects)."""

    arity: int
    margin: Expression
    meaning: str
    shape: str = "tuple"
    holds: Expression | None = None
    values: dict[str, Expression] = field(default_factory=dict)
    max_margin: float = math.inf
    needs_metric: bool = False


def grid(value: Expression) -> Expression:
    """A [0, 1] coordinate on the [0, 1000] integer grid (Qwen-VL convention)."""
    return (value * 1000).round(0).cast("int64").cast("string")


def box_text(side: str) -> Expression:
    """'(x1,y1,x2,y2)' of a side's box on the [0, 1000] grid."""
    parts = [grid(col(f"{side}_{k}")) for k in ("x1", "y1", "x2", "y2")]
    return lit("(") + parts[0] + lit(",") + parts[1] + lit(",") + parts[2] + lit(",") + parts[3] + lit(")")


def point_text(side: str) -> Expression:
    """'(x,y)' of a side's box centre on the [0, 1000] grid."""
    return lit("(") + grid(col(f"{side}_cx")) + lit(",") + grid(col(f"{side}_cy")) + lit(")")


def tenths(value: Expression) -> Expression:
    """A non-negative number rounded to 0.1 as text, e.g. '2.3' or '0.8'."""
    count = (value * 10).round(0).cast("int64")
    return (count // 10).cast("string") + lit(".") + (count % 10).cast("string")


def lateral(side: str) -> Expression:
    """Camera-frame x (right) of the box centre at the object's depth, via the assumed focal length."""
    return (col(f"{side}_cx") - 0.5) * col(f"{side}_depth") * col("fov_scale")


def vertical(side: str) -> Expression:
    """Camera-frame y (down) of the box centre at the object's depth."""
    aspect = col("height").cast("float64") / col("width").cast("float64")
    return (col(f"{side}_cy") - 0.5) * col(f"{side}_depth") * col("fov_scale") * aspect


def real_width(side: str) -> Expression:
    return col(f"{side}_w") * col(f"{side}_depth") * col("fov_scale")


def real_height(side: str) -> Expression:
    aspect = col("height").cast("float64") / col("width").cast("float64")
    return col(f"{side}_h") * col(f"{side}_depth") * col("fov_scale") * aspect


def relative_gap(a: Expression, b: Expression) -> Expression:
    """(larger - smaller) / smaller: how many times apart two positive quantities are, minus one."""
    smaller = F.when(a < b, a).otherwise(b)
    return (a - b).abs() / smaller


def side_of(origin: str, facing: tuple[Expression, Expression], target: str) -> tuple[Expression, Expression]:
    """(is `target` on the left, |sin| of its angle off the facing line) for an observer at `origin`.

    Ground plane (x right, z away from the camera) seen from above: with facing d and target
    offset v, the target is on the left when cross(d, v) = dx·vz − dz·vx > 0.
    """
    dx, dz = facing
    vx = lateral(target) - lateral(origin)
    vz = col(f"{target}_depth") - col(f"{origin}_depth")
    cross = dx * vz - dz * vx
    norms = (dx * dx + dz * dz).sqrt() * (vx * vx + vz * vz).sqrt()
    return cross > 0, (cross / norms).abs()


def iou(first: str, second: str) -> Expression:
    """Intersection over union of two sides' boxes."""
    def lesser(a: Expression, b: Expression) -> Expression:
        return F.when(a < b, a).otherwise(b)

    def greater(a: Expression, b: Expression) -> Expression:
        return F.when(a > b, a).otherwise(b)

    w = lesser(col(f"{first}_x2"), col(f"{second}_x2")) - greater(col(f"{first}_x1"), col(f"{second}_x1"))
    h = lesser(col(f"{first}_y2"), col(f"{second}_y2")) - greater(col(f"{first}_y1"), col(f"{second}_y1"))
    inter = F.when((w > 0) & (h > 0), w * h).otherwise(lit(0.0))
    return inter / (col(f"{first}_area") + col(f"{second}_area") - inter)
