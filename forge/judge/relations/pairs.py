"""Two-object relations: depth order, image layout, real size comparison, distances, one observer's view."""

from __future__ import annotations

import polars as pl

from forge.judge.relations.base import FLOOR, Relation, difference, metres, relative_gap, side_of

col = pl.col


def _box_gap(low: str, high: str) -> tuple[pl.Expr, pl.Expr]:
    """(a before b, gap between the boxes along an axis, negative when they overlap)."""
    a_first = (col(f"a_{low}") + col(f"a_{high}")) < (col(f"b_{low}") + col(f"b_{high}"))
    gap = pl.when(a_first).then(col(f"b_{low}") - col(f"a_{high}")).otherwise(col(f"a_{low}") - col(f"b_{high}"))
    return a_first, gap


_left, _x_gap = _box_gap("x1", "x2")
_above, _y_gap = _box_gap("y1", "y2")
_distance = difference("a", "b", ("x3d", "y3d", "z3d"))
_horizontal = difference("a", "b", FLOOR)
_vertical = (col("a_elevation") - col("b_elevation")).abs()
# standing at a, facing the camera (at the origin of the floor plane)
_b_left_of_a, _b_offset = side_of("a", (pl.lit(0.0) - col("a_across"), pl.lit(0.0) - col("a_along")), "b")


def _comparison(column: str, what: str) -> Relation:
    """Which of two objects is larger in a lifted extent, in reality."""
    return Relation(
        holds=col(f"a_{column}") > col(f"b_{column}"),
        margin=relative_gap(col(f"a_{column}"), col(f"b_{column}")),
        meaning=f"holds when a is {what} than b in reality ({column}: the 3D extent lifted from its pixels); "
                f"margin = relative gap",
        needs_gravity=True, lifted=(column,), whole_objects=True)


def _measurement(name: str, value: pl.Expr, lifted: tuple[str, ...], gravity: bool, what: str) -> Relation:
    """A distance in metres ({name}: centimetres below 1 m, else 0.1 m); margin = the distance itself, so
    that a min_margin keeps only distances large enough to be measured well."""
    return Relation(
        margin=value, values={name: metres(value)}, measures={name: value}, needs_metric=True, needs_gravity=gravity,
        lifted=lifted, whole_objects=True,
        meaning=f"{what}, in metres ({{{name}}}); margin = the distance in metres")


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
    "wider": _comparison("width3d", "wider"),
    "taller": _comparison("height3d", "taller"),
    "distance": _measurement("distance", _distance, ("x3d", "y3d", "z3d"), False,
                             "distance between the objects' 3D centroids"),
    "horizontal_distance": _measurement("horizontal_distance", _horizontal, FLOOR, True,
                                        "distance between the centroids along the floor"),
    "vertical_distance": _measurement("vertical_distance", _vertical, ("elevation",), True,
                                      "difference between the centroids' heights above the floor"),
    "perspective_side": Relation(
        holds=_b_left_of_a,
        margin=_b_offset,
        max_margin=1.0,
        meaning="standing at a and facing the camera, holds when b is on a's left (on the floor, in the gravity "
                "frame); margin = |sin| of b's angle off a's facing line",
        needs_gravity=True, lifted=FLOOR, whole_objects=True,
    ),
}
