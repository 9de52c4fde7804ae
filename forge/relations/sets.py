"""Sets of objects in one image: which of N named objects is closest / farthest (multiple choice).

Each image contributes one set: its objects that pass the object rules, in a seeded order,
cut to a seeded size in [min, max] (3..5 by default). Option order is that seeded order, so
the right answer's position is uniform over the options.
"""

from __future__ import annotations

import math

from daft import DataFrame, Window, col, lit

import daft.functions as F

from forge.relations.base import Relation
from forge.relations.positions import options_text, pivot

MAX_SET = 5

DEPTH_EXTREME = Relation(
    arity=0,
    shape="set",
    margin=col("set_margin"),
    values={"options": col("options"), "nearest": col("nearest"), "farthest": col("farthest")},
    max_margin=math.inf,
    meaning="which of 3-5 objects is nearest / farthest; values {options}, {nearest}, {farthest}; "
            "margin = the smaller of the relative depth gaps between the two nearest and the two farthest",
)


def object_sets(eligible: DataFrame, images: DataFrame, family_name: str, size: tuple[int, int], seed: int) -> DataFrame:
    """One row per image: per-position columns of its set, `set_size`, `options`, extremes, `set_margin`.

    `eligible` holds a_* object rows that passed the object rules; `images` lists every image
    with objects (so images without enough eligible objects still count as candidates).
    """
    low, high = size
    image = Window().partition_by("image_id")
    ranked = eligible.with_columns({
        "order_key": F.hash(col("image_id"), col("a_idx"), lit(f"set-order/{family_name}"), seed=seed),
        "eligible": col("a_idx").count().over(image),
        "wanted": lit(low) + (F.hash(col("image_id"), lit(f"set-size/{family_name}"), seed=seed) % (high - low + 1)),
    })
    ranked = ranked.with_column("set_size", F.when(col("wanted") < col("eligible"), col("wanted")).otherwise(col("eligible")))
    ranked = ranked.with_column("slot", F.row_number().over(image.order_by("order_key")))
    members = ranked.where(col("slot") <= col("set_size"))
    members = members.with_column("depth_rank", F.row_number().over(image.order_by(["a_depth", "order_key"])))
    by_rank = {f"d{r}": F.when(col("depth_rank") == r, col("a_depth")) for r in range(1, MAX_SET + 1)}
    members = members.with_columns({
        **by_rank,
        "nearest_label": F.when(col("depth_rank") == 1, col("a_label")),
        "farthest_label": F.when(col("depth_rank") == col("set_size"), col("a_label")),
    })
    extra = {"set_size": col("set_size").max(), "nearest": col("nearest_label").max(),
             "farthest": col("farthest_label").max(), **{f"d{r}": col(f"d{r}").max() for r in range(1, MAX_SET + 1)}}
    sets = pivot(members, ["image_id"], "order_key", MAX_SET, extra)
    farthest = F.when(col("set_size") == 3, col("d3")).otherwise(F.when(col("set_size") == 4, col("d4")).otherwise(col("d5")))
    second_farthest = F.when(col("set_size") == 3, col("d2")).otherwise(F.when(col("set_size") == 4, col("d3")).otherwise(col("d4")))
    near_gap = (col("d2") - col("d1")) / col("d1")
    far_gap = (farthest - second_farthest) / second_farthest
    sets = sets.with_columns({
        "set_margin": F.when(near_gap < far_gap, near_gap).otherwise(far_gap),
        "options": options_text(col("set_size"), MAX_SET),
    })
    everyone = images.join(sets.exclude(*[c for c in ("image_uri", "width", "height", "depth_kind", "perception", "fov_scale")]),
                           on="image_id", how="left")
    return everyone.with_column("set_size", col("set_size").fill_null(0))
