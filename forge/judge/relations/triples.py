"""Three-object relations: viewpoint-dependent questions from one object toward another."""

from __future__ import annotations

import polars as pl

from forge.judge.relations.base import FLOOR, Relation, side_of

# an observer at a, looking toward b, on the floor (gravity frame)
_c_left, _c_offset = side_of("a", (pl.col("b_across") - pl.col("a_across"), pl.col("b_along") - pl.col("a_along")), "c")

TRIPLE_RELATIONS: dict[str, Relation] = {
    "perspective_view": Relation(
        holds=_c_left,
        margin=_c_offset,
        max_margin=1.0,
        meaning="from a looking at b, holds when c is on the left (on the floor, in the gravity frame); margin = "
                "|sin| of c's angle off the a->b line",
        needs_gravity=True, lifted=FLOOR, whole_objects=True,
    ),
}
