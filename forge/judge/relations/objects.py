"""One-object relations: where an object is (grounding, referring) and how big it is (size)."""

from __future__ import annotations

from dataclasses import replace

import polars as pl

from forge.judge.relations.base import Relation, box_text, point_text, real_height, real_width, tenths

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
        margin=pl.lit(1.0),
        values={"width": tenths(real_width("a")), "height": tenths(real_height("a"))},
        max_margin=1.0,
        needs_metric=True,
        whole_objects=True,
        meaning="metric width/height of an object's box at its depth, in metres to 0.1 ({width}, {height}); metric depth only",
    ),
}
