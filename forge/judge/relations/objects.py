"""One-object relations: where an object is (grounding, referring) and how big it is (size)."""

from __future__ import annotations

from dataclasses import replace

import polars as pl

from forge.judge.relations.base import Relation, box_text, metres, point_text

_GROUNDING = Relation(
    margin=pl.col("a_score"),
    values={"box": box_text("a"), "point": point_text("a")},
    max_margin=1.0,
    meaning="locate a named object; values {box} (x1,y1,x2,y2) and {point} (x,y) on the [0,1000] grid; margin = detector score",
)

OBJECT_RELATIONS: dict[str, Relation] = {
    "grounding": _GROUNDING,
    # the same geometry asked the other way round: the box or point is given, the label answered
    "referring": replace(_GROUNDING, meaning="name the object at a box or point; same values as grounding"),
    "size": Relation(
        margin=pl.min_horizontal(pl.col("a_width3d"), pl.col("a_height3d")),
        values={"width": metres(pl.col("a_width3d")), "height": metres(pl.col("a_height3d"))},
        measures={"width": pl.col("a_width3d"), "height": pl.col("a_height3d")},
        needs_metric=True,
        needs_gravity=True,
        lifted=("width3d", "height3d"),
        whole_objects=True,
        meaning="an object's width (across the view) and height (along gravity) in metres ({width}, {height}; centimetres below 1 m, else 0.1 m), "
                "lifted from its pixels; margin = the smaller of the two, in metres",
    ),
}
