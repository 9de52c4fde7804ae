"""Objects -> unordered pairs within an image, by a self-join on image id.

Each unordered pair appears once; which object is named first (`a`) is a seeded hash of
the pair, so answers that depend on naming order come out balanced and reproducible.
"""

from __future__ import annotations

from daft import DataFrame, col, lit

import daft.functions as F

from forge.spec.expressions import OBJECT_COLUMNS

IMAGE_COLUMNS = ("image_id", "image_uri", "width", "height", "depth_kind", "perception")


def pair_rows(objects: DataFrame, seed: int) -> DataFrame:
    """Self-join objects on image id; keep one seeded orientation of each unordered pair."""
    a = objects.select(*IMAGE_COLUMNS, *[col(c).alias(f"a_{c}") for c in OBJECT_COLUMNS])
    b = objects.select(col("image_id").alias("b_image"), *[col(c).alias(f"b_{c}") for c in OBJECT_COLUMNS])
    pairs = a.join(b, left_on="image_id", right_on="b_image").exclude("b_image")
    pairs = pairs.where(col("a_idx") != col("b_idx"))
    low = F.when(col("a_idx") < col("b_idx"), col("a_idx")).otherwise(col("b_idx"))
    high = F.when(col("a_idx") < col("b_idx"), col("b_idx")).otherwise(col("a_idx"))
    low_first = (F.hash(col("image_id"), low, high, lit("pair-order"), seed=seed) % 2) == 0
    return pairs.where((col("a_idx") < col("b_idx")) == low_first)
