"""Two-object relations: depth order, image layout, real size comparison, distance, one observer's view."""

from __future__ import annotations

import polars as pl

from forge.judge.relations.base import Relation, lateral, real_width, relative_gap, side_of, tenths, vertical

col = pl.col


def _box_gap(low: str, high: str) -> tuple[pl.Expr, pl.Expr]:
    """(a before b, gap between the boxes along an axis, negative when they overlap)."""
    a_first = (col(f"a_{low}") + col(f"a_{high}")) < (col(f"b_{low}") + col(f"b_{high}"))
    gap = pl.when(a_first).then(col(f"b_{low}") - col(f"a_{high}")).otherwise(col(f"a_{low}") - col(f"b_{high}"))
    return a_first, gap


_left, _x_gap = _box_gap("x1", "x2")
_above, _y_gap = _box_gap("y1", "y2")
_dx = lateral("a") - lateral("b")
_dy = vertical("a") - vertical("b")
_dz = col("a_depth") - col("b_depth")
# standing at a, facing the camera (at the origin of the ground plane)
_b_left_of_a, _b_offset = side_of("a", (pl.lit(0.0) - lateral("a"), pl.lit(0.0) - col("a_depth")), "b")

PAIR_RELATIONS: dict[str, Relation] = {
    "depth_order": Relation(
        holds=col("a_depth") < col("b_depth"),
        margin=relative_gap(col("a_depth"), col("b_depth")),
        meaning="holds when a is closer to the camera; margin = (far - near) / near depth",
    ),
    "left_right": Relation(
        holds=_left,
        margin=_x_gap,
        max_margin=1.0,
        meaning="holds when a is left of b in the image; margin = horizontal gap between the boxes / image width (negative if they overlap)",
    ),
    "above_below": Relation(
        holds=_above,
        margin=_y_gap,
        max_margin=1.0,
        meaning="holds when a is above b in the image; margin = vertical gap between the boxes / image height",
    ),
    "wider": Relation(
        holds=real_width("a") > real_width("b"),
        margin=relative_gap(real_width("a"), real_width("b")),
        meaning="holds when a is wider than b in reality (box width x depth); margin = relative width gap; relative depth is enough",
        whole_objects=True,
    ),
    "distance": Relation(
        margin=pl.lit(1.0),
        values={"distance": tenths((_dx * _dx + _dy * _dy + _dz * _dz).sqrt())},
        max_margin=1.0,
        needs_metric=True,
        whole_objects=True,
        meaning="metric distance between the back-projected box centres, metres to 0.1 ({distance}); metric depth only",
    ),
    "perspective_side": Relation(
        holds=_b_left_of_a,
        margin=_b_offset,
        max_margin=1.0,
        meaning="standing at a and facing the camera, holds when b is on a's left; margin = |sin| of b's angle off a's facing line",
        whole_objects=True,
    ),
}
