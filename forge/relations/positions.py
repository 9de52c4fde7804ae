"""Object lists as fixed per-position columns, so set and group questions stay columnar.

A set of up to N objects becomes columns label_1..label_N, x1_1..x1_N, ... via a window rank
and a group-by; lists (choices, objects) are rebuilt from them with the set's size.
"""

from __future__ import annotations

from typing import Callable

from daft import DataFrame, Expression, Window, col, lit

import daft.functions as F

FIELDS = ("idx", "label", "x1", "y1", "x2", "y2", "depth")
IMAGE_FIELDS = ("image_uri", "width", "height", "depth_kind", "perception", "fov_scale")


def pivot(members: DataFrame, by: list[str], order: str, size: int, extra: dict[str, Expression] | None = None) -> DataFrame:
    """One row per `by` group with columns <field>_<p> for positions p = 1..size in `order`."""
    window = Window().partition_by(*by).order_by(order)
    ranked = members.with_column("position", F.row_number().over(window))
    ranked = ranked.with_columns(
        {f"{f}_{p}": F.when(col("position") == p, col(f"a_{f}")) for f in FIELDS for p in range(1, size + 1)})
    aggregations = [col(f"{f}_{p}").max().alias(f"{f}_{p}") for f in FIELDS for p in range(1, size + 1)]
    aggregations += [col(c).any_value().alias(c) for c in IMAGE_FIELDS]
    aggregations += [e.alias(name) for name, e in (extra or {}).items()]
    return ranked.groupby(*by).agg(*aggregations)


def by_size(count: Expression, size_min: int, size_max: int, build: Callable[[int], Expression]) -> Expression:
    """`build(k)` for the row's k = count, for k in [size_min, size_max]."""
    expr = build(size_max)
    for k in range(size_max - 1, size_min - 1, -1):
        expr = F.when(count == k, build(k)).otherwise(expr)
    return expr


def objects_list(count: Expression, size_min: int, size_max: int) -> Expression:
    """The `objects` column: {label, box} of positions 1..count."""
    def build(k: int) -> Expression:
        return F.to_list(*(F.to_struct(label=col(f"label_{p}"), box=F.to_list(
            *(col(f"{c}_{p}") for c in ("x1", "y1", "x2", "y2")))) for p in range(1, k + 1)))
    return by_size(count, size_min, size_max, build)


def labels_list(count: Expression, size_min: int, size_max: int) -> Expression:
    return by_size(count, size_min, size_max, lambda k: F.to_list(*(col(f"label_{p}") for p in range(1, k + 1))))


def options_text(count: Expression, size_max: int) -> Expression:
    """'the A, the B or the C' for positions 1..count."""
    text = lit("the ") + col("label_1")
    for p in range(2, size_max + 1):
        label = col(f"label_{p}")
        text = text + F.when(count > p, lit(", the ") + label).otherwise(
            F.when(count == p, lit(" or the ") + label).otherwise(lit("")))
    return text


def keys(size: int) -> list[Expression]:
    """Object indexes identifying a set or group within its image (absent positions as -1)."""
    return [col(f"idx_{p}").fill_null(-1) for p in range(1, size + 1)]
