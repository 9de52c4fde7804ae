"""Sets of objects in one image: which of N named objects is closest / farthest (multiple choice).

The set and its option order come from `shapes.Sets` (lists `labels`, `depths` in option order);
this is the geometry over those lists.
"""

from __future__ import annotations

import math

import polars as pl

from forge.judge.relations.base import Relation

_depths = pl.col("depths")
_sorted = _depths.list.sort()


def _gap(low: int, high: int) -> pl.Expr:
    near = _sorted.list.get(low, null_on_oob=True)
    return (_sorted.list.get(high, null_on_oob=True) - near) / near


_complete = _depths.list.drop_nulls().list.len() == _depths.list.len()  # every member has a depth
_last = pl.col("labels").list.get(-1, null_on_oob=True)
_options = pl.concat_str([pl.lit("the "), pl.col("labels").list.head(pl.col("set_size") - 1).list.join(", the "),
                          pl.lit(" or the "), _last])

DEPTH_EXTREME = Relation(
    margin=pl.when(_complete).then(pl.min_horizontal(_gap(0, 1), _gap(-2, -1))),
    values={"options": _options,
            "nearest": pl.col("labels").list.get(_depths.list.arg_min(), null_on_oob=True),
            "farthest": pl.col("labels").list.get(_depths.list.arg_max(), null_on_oob=True)},
    positions={"nearest": _depths.list.arg_min(), "farthest": _depths.list.arg_max()},
    max_margin=math.inf,
    meaning="which of 3-5 objects is nearest / farthest; values {options}, {nearest}, {farthest}; "
            "margin = the smaller of the relative depth gaps between the two nearest and the two farthest",
)
