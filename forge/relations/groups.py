"""Groups of same-label objects in one image: how many X are there?

A count is only asked when it can be trusted: every detection of X is confident (no
detection below `verify.min_score` that might or might not be an X), no two boxes of X
overlap like duplicate detections of one object, and the count is at most `max_count`.
"""

from __future__ import annotations

from daft import DataFrame, Expression, col, lit

import daft.functions as F

from forge.relations.base import Relation, iou
from forge.relations.positions import pivot

MAX_COUNT = 10


def plural(label: Expression) -> Expression:
    """English plural of a (possibly multi-word) label: its last word takes the ending."""
    irregular = {"person": "people", "man": "men", "woman": "women", "child": "children", "mouse": "mice",
                 "knife": "knives", "shelf": "shelves", "foot": "feet", "tooth": "teeth", "goose": "geese",
                 "sheep": "sheep", "fish": "fish", "deer": "deer", "skis": "skis", "glasses": "glasses",
                 "scissors": "scissors"}
    length = label.length().cast("int64")  # uint64 minus an int would become float64

    def without_last(n: int) -> Expression:  # every `when` branch is evaluated, so never a negative length
        return label.substr(0, F.when(length > n, length - n).otherwise(lit(0)))

    expr = F.when(label.endswith("y") & ~label.endswith("ay") & ~label.endswith("ey") & ~label.endswith("oy"),
                  without_last(1) + lit("ies"))
    expr = expr.when(label.endswith("s") | label.endswith("x") | label.endswith("z") | label.endswith("ch")
                     | label.endswith("sh"), label + lit("es"))
    result = expr.otherwise(label + lit("s"))
    for word, many in irregular.items():
        result = F.when(label == word, lit(many)).otherwise(
            F.when(label.endswith(" " + word), without_last(len(word)) + lit(many)).otherwise(result))
    return result


COUNTING = Relation(
    arity=1,
    shape="group",
    margin=col("min_score"),
    values={"count": col("count").cast("string"), "plural": plural(col("a_label"))},
    max_margin=1.0,
    meaning="how many objects share a label; values {count}, {plural}; margin = the lowest detector score in the group",
)


def object_groups(objects: DataFrame, min_score: float) -> DataFrame:
    """One row per (image, label): `count` of confident boxes, `uncertain` ones, `duplicate_iou`, per-position boxes."""
    confident = objects.where(col("a_score") >= min_score)
    uncertain = objects.where(col("a_score") < min_score).groupby("image_id", "a_label").agg(
        col("a_idx").count().alias("uncertain"))
    other = confident.select("image_id", *[col(f"a_{c}").alias(f"b_{c}") for c in ("idx", "label", "x1", "y1", "x2", "y2", "area")])
    same = confident.join(other, left_on=["image_id", "a_label"], right_on=["image_id", "b_label"]).where(
        col("a_idx") < col("b_idx"))
    overlap = same.with_column("iou", iou("a", "b")).groupby("image_id", "a_label").agg(col("iou").max().alias("duplicate_iou"))
    groups = pivot(confident, ["image_id", "a_label"], "a_idx", MAX_COUNT, {
        "count": col("a_idx").count(), "min_score": col("a_score").min()})
    groups = groups.join(uncertain, on=["image_id", "a_label"], how="left").join(overlap, on=["image_id", "a_label"], how="left")
    return groups.with_columns({"uncertain": col("uncertain").fill_null(0), "duplicate_iou": col("duplicate_iou").fill_null(0.0)})
