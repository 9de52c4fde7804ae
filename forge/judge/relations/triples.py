"""Three-object relations: viewpoint-dependent questions from one object toward another."""

from __future__ import annotations

import polars as pl

from forge.judge.relations.base import Relation, lateral, side_of

# an observer at a, looking toward b
_c_left, _c_offset = side_of("a", (lateral("b") - lateral("a"), pl.col("b_depth") - pl.col("a_depth")), "c")

TRIPLE_RELATIONS: dict[str, Relation] = {
    "perspective_view": Relation(
        holds=_c_left,
        margin=_c_offset,
        max_margin=1.0,
        meaning="from a looking at b, holds when c is on the left; margin = |sin| of c's angle off the a->b line",
        whole_objects=True,
    ),
}
