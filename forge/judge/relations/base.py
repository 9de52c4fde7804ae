"""The relation record and the geometry relations share (boxes on [0, 1000], positions on the floor), as
Polars expressions over the columns of the objects a question names (a_*, b_*, c_*). 3D geometry reads
the numbers perception lifted from each object's pixels with its image's camera (`perception/lifting.py`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import polars as pl

col = pl.col


@dataclass(frozen=True)
class Relation:
    """A family's geometry: `margin` (how clearly the answer is decided), `holds` (which of two
    answers is right) or named `values` that templates print, and `positions`: for each value a
    multiple-choice answer may name, the index of that option (for answer-position balancing)."""

    margin: pl.Expr
    meaning: str
    holds: pl.Expr | None = None
    values: dict[str, pl.Expr] = field(default_factory=dict)
    positions: dict[str, pl.Expr] = field(default_factory=dict)
    max_margin: float = math.inf
    needs_metric: bool = False  # answers in metres: metric depth and a real camera
    needs_gravity: bool = False  # reads the gravity frame (heights, the floor): the image needs gravity and a real camera
    lifted: tuple[str, ...] = ()  # lifted object columns it reads: an object without them is not asked about
    whole_objects: bool = False  # reads an extent or centre, which a nearer object hiding part of it shifts
    checks: tuple[str, ...] = ()  # values that decide the answer beside holds/positions (calibration compares them)
    measures: dict[str, pl.Expr] = field(default_factory=dict)  # an answer's numbers in metres (calibration: their error)

    def decision(self) -> list[pl.Expr]:
        """What the answer is decided by: holds, the positions of multiple-choice answers and the
        checked values. Empty for open answers (a box, a measurement): those are right when the
        objects they name are."""
        out = [self.holds] if self.holds is not None else []
        out += [self.positions[name] for name in sorted(self.positions)]
        return out + [self.values[name] for name in self.checks]


def grid(value: pl.Expr) -> pl.Expr:
    """A [0, 1] coordinate on the [0, 1000] integer grid (Qwen-VL convention), as text."""
    return (value * 1000).round(0).cast(pl.Int64).cast(pl.String)


def box_text(side: str) -> pl.Expr:
    """'(x1,y1,x2,y2)' of a side's box on the [0, 1000] grid."""
    x1, y1, x2, y2 = (grid(col(f"{side}_{k}")) for k in ("x1", "y1", "x2", "y2"))
    return pl.concat_str([pl.lit("("), x1, pl.lit(","), y1, pl.lit(","), x2, pl.lit(","), y2, pl.lit(")")])


def point_text(side: str) -> pl.Expr:
    """'(x,y)' of a side's box centre on the [0, 1000] grid."""
    return pl.concat_str([pl.lit("("), grid(col(f"{side}_cx")), pl.lit(","), grid(col(f"{side}_cy")), pl.lit(")")])


def metres(value: pl.Expr) -> pl.Expr:
    """A non-negative length as text: to the centimetre below one metre ('0.35'), to 0.1 m above ('2.3'),
    so that rounding costs at most about 2.5% of anything 0.2 m or longer."""
    cents = (value * 100).round(0).cast(pl.Int64)
    tenth = (value * 10).round(0).cast(pl.Int64)
    small = pl.concat_str([pl.lit("0."), (cents % 100).cast(pl.String).str.zfill(2)])
    large = pl.concat_str([(tenth // 10).cast(pl.String), pl.lit("."), (tenth % 10).cast(pl.String)])
    return pl.when(cents < 100).then(small).otherwise(large)


def difference(first: str, second: str, columns: tuple[str, ...]) -> pl.Expr:
    """Euclidean norm of the difference of two sides' `columns` (a 3D or floor-plane distance)."""
    return pl.sum_horizontal([(col(f"{first}_{c}") - col(f"{second}_{c}")) ** 2 for c in columns]).sqrt()


def relative_gap(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """(larger - smaller) / smaller: how many times apart two positive quantities are, minus one."""
    return (a - b).abs() / pl.min_horizontal(a, b)


FLOOR = ("across", "along")  # an object's position on the floor plane, in the gravity frame


def side_of(origin: str, facing: tuple[pl.Expr, pl.Expr], target: str) -> tuple[pl.Expr, pl.Expr]:
    """(is `target` on the left, |sin| of its angle off the facing line) for an observer at `origin`.

    The floor seen from above, in the gravity frame (x across the view to the right, z along it away
    from the camera, which stands at the origin): with facing d and target offset v, the target is
    on the left when cross(d, v) = dx·vz − dz·vx > 0.
    """
    dx, dz = facing
    vx = col(f"{target}_across") - col(f"{origin}_across")
    vz = col(f"{target}_along") - col(f"{origin}_along")
    cross = dx * vz - dz * vx
    norms = (dx * dx + dz * dz).sqrt() * (vx * vx + vz * vz).sqrt()
    return cross > 0, (cross / norms).abs()


def iou(first: str, second: str) -> pl.Expr:
    """Intersection over union of two sides' boxes."""
    w = pl.min_horizontal(col(f"{first}_x2"), col(f"{second}_x2")) - pl.max_horizontal(col(f"{first}_x1"), col(f"{second}_x1"))
    h = pl.min_horizontal(col(f"{first}_y2"), col(f"{second}_y2")) - pl.max_horizontal(col(f"{first}_y1"), col(f"{second}_y1"))
    inter = pl.when((w > 0) & (h > 0)).then(w * h).otherwise(0.0)
    return inter / (col(f"{first}_area") + col(f"{second}_area") - inter)
