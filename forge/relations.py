"""Built-in pair relations as Daft expressions over `a_*`/`b_*` columns.

A relation is a boolean `holds` (which answer is right) plus a non-negative `margin`
(how clearly it is right). Families ask a question only when `margin >= min_margin`,
so every comparative answer carries the evidence it was decided on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from daft import Expression, col

import daft.functions as F


@dataclass(frozen=True)
class Relation:
    holds: Expression
    margin: Expression
    max_margin: float
    meaning: str


def _relative_gap(a: Expression, b: Expression) -> Expression:
    nearer = F.when(a < b, a).otherwise(b)
    return (a - b).abs() / nearer


BUILTIN_RELATIONS: dict[str, Relation] = {
    "depth_order": Relation(
        holds=col("a_depth") < col("b_depth"),
        margin=_relative_gap(col("a_depth"), col("b_depth")),
        max_margin=math.inf,
        meaning="holds when a is closer to the camera; margin = (far - near) / near depth",
    ),
    "left_right": Relation(
        holds=col("a_cx") < col("b_cx"),
        margin=(col("a_cx") - col("b_cx")).abs(),
        max_margin=1.0,
        meaning="holds when a's box centre is left of b's (smaller x); margin = |centre gap| / image width",
    ),
}
