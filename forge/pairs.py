"""Objects -> the tuples a family reasons about: single objects, pairs or triples in one image.

Pairs and triples come from self-joins on image id. Each unordered pair or triple appears
once; which object is named first is a seeded hash of the set, so answers that depend on
naming order come out balanced and reproducible.
"""

from __future__ import annotations

from daft import DataFrame, Expression, col, lit

import daft.functions as F

from forge.spec.expressions import OBJECT_COLUMNS, SIDES

IMAGE_COLUMNS = ("image_id", "image_uri", "width", "height", "depth_kind", "perception", "fov_scale")


def _side(objects: DataFrame, side: str) -> DataFrame:
    return objects.select(col("image_id").alias(f"{side}_image"), *[col(c).alias(f"{side}_{c}") for c in OBJECT_COLUMNS])


def _join(left: DataFrame, objects: DataFrame, side: str) -> DataFrame:
    joined = left.join(_side(objects, side), left_on="image_id", right_on=f"{side}_image").exclude(f"{side}_image")
    distinct = [col(f"{side}_idx") != col(f"{other}_idx") for other in SIDES[: SIDES.index(side)]]
    condition = distinct[0]
    for more in distinct[1:]:
        condition = condition & more
    return joined.where(condition)


def _ordering_code(a: Expression, b: Expression, c: Expression) -> Expression:
    """0..5: which of the six orderings of three distinct indexes (a, b, c) this row is."""
    code = F.when(a < b, lit(4)).otherwise(lit(0)) + F.when(b < c, lit(2)).otherwise(lit(0)) + F.when(a < c, lit(1)).otherwise(lit(0))
    # the six orderings give codes 0, 2, 3, 4, 5, 7 (1 and 6 would contradict themselves): fold onto 0..5
    return F.when(code == 7, lit(5)).otherwise(F.when(code >= 2, code - 1).otherwise(code))


def object_tuples(objects: DataFrame, arity: int, seed: int) -> DataFrame:
    """Rows with image columns plus a_*, b_*, c_* object columns for the first `arity` sides."""
    first = objects.select(*IMAGE_COLUMNS, *[col(c).alias(f"a_{c}") for c in OBJECT_COLUMNS])
    if arity == 1:
        return first
    pairs = _join(first, objects, "b")
    a, b = col("a_idx"), col("b_idx")
    if arity == 2:
        low = F.when(a < b, a).otherwise(b)
        high = F.when(a < b, b).otherwise(a)
        low_first = (F.hash(col("image_id"), low, high, lit("pair-order"), seed=seed) % 2) == 0
        return pairs.where((a < b) == low_first)
    triples = _join(pairs, objects, "c")
    c = col("c_idx")
    smallest = F.when((a < b) & (a < c), a).otherwise(F.when(b < c, b).otherwise(c))
    largest = F.when((a > b) & (a > c), a).otherwise(F.when(b > c, b).otherwise(c))
    middle = a + b + c - smallest - largest
    chosen = F.hash(col("image_id"), smallest, middle, largest, lit("triple-order"), seed=seed) % 6
    return triples.where(_ordering_code(a, b, c) == chosen)
