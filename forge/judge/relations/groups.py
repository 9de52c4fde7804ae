"""Groups of same-label objects in one image: how many X are there?

A count is only asked when it can be trusted (the rules of `shapes.Groups`): every detection of X
is confident, no two boxes of X overlap like duplicate detections of one object, and the count is
at most `max_count`.
"""

from __future__ import annotations

import polars as pl

from forge.judge.relations.base import Relation

_IRREGULAR = {"person": "people", "man": "men", "woman": "women", "child": "children", "mouse": "mice",
              "knife": "knives", "shelf": "shelves", "foot": "feet", "tooth": "teeth", "goose": "geese",
              "sheep": "sheep", "fish": "fish", "deer": "deer", "skis": "skis", "glasses": "glasses",
              "scissors": "scissors"}


def plural(label: pl.Expr) -> pl.Expr:
    """English plural of a (possibly multi-word) label: its last word takes the ending."""
    def without_last(n: int) -> pl.Expr:
        return label.str.slice(0, pl.max_horizontal(label.str.len_chars() - n, pl.lit(0)))

    ends = label.str.ends_with
    result = (pl.when(ends("y") & ~ends("ay") & ~ends("ey") & ~ends("oy")).then(pl.concat_str([without_last(1), pl.lit("ies")]))
              .when(ends("s") | ends("x") | ends("z") | ends("ch") | ends("sh")).then(pl.concat_str([label, pl.lit("es")]))
              .otherwise(pl.concat_str([label, pl.lit("s")])))
    for word, many in _IRREGULAR.items():
        result = (pl.when(label == word).then(pl.lit(many))
                  .when(ends(" " + word)).then(pl.concat_str([without_last(len(word)), pl.lit(many)]))
                  .otherwise(result))
    return result


COUNTING = Relation(
    margin=pl.col("min_score"),
    values={"count": pl.col("count").cast(pl.String), "plural": plural(pl.col("a_label"))},
    max_margin=1.0,
    checks=("count",),
    meaning="how many objects share a label; values {count}, {plural}; margin = the lowest detector score in the group",
)
