"""Answer balancing by seeded rejection, CLEVR-style, as columnar window operations.

Within a family, kept rows fall into cells: the position of the answer among the choices
(two-choice, yes/no, multiple choice: A/B, yes/no and option-position balance) or the answer
text (open answers such as counts). No cell may hold more than `max_ratio` times the runner-up
cell; the surplus rows with the highest seeded hash are rejected as `balance`. With the default
1.1, the larger side of a two-way answer holds at most 52.4% of its family.
"""

from __future__ import annotations

from daft import DataFrame, Expression, Window, col, lit

import daft.functions as F

BALANCE_RULE = "balance"
MAX_OPTIONS = 5


def answer_position() -> Expression:
    """Index of the answer among the choices (-1 for open answers)."""
    position = lit(-1)
    for i in range(MAX_OPTIONS - 1, -1, -1):
        position = F.when(col("choices").get(i) == col("answer"), lit(i)).otherwise(position)
    return position


def balance(judged: DataFrame, modes: dict[str, tuple[str, float]], seed: int) -> DataFrame:
    """Mark surplus kept rows of over-full answer cells with reject = 'balance'.

    `modes` maps a family to (cell kind "position" or "answer", max_ratio); other families pass.
    """
    if not modes:
        return judged
    columns = judged.column_names
    by_position = [name for name, (by, _) in modes.items() if by == "position"]
    eligible = col("reject").is_null() & col("family").is_in(list(modes))
    cell = F.when(col("family").is_in(by_position), answer_position().cast("string")).otherwise(col("answer"))
    candidates = judged.where(eligible).with_column("cell", cell)
    counted = candidates.groupby("family", "cell").agg(col("qa_id").count().alias("cell_rows"))
    ranked_cells = counted.with_column("cell_rank", F.row_number().over(
        Window().partition_by("family").order_by("cell_rows", "cell", desc=[True, False])))
    ratio = lit(1.0)
    for name, (_, max_ratio) in modes.items():
        ratio = F.when(col("family") == name, lit(max_ratio)).otherwise(ratio)
    caps = ranked_cells.where(col("cell_rank") == 2).select(
        "family", (col("cell_rows") * ratio).ceil().cast("int64").alias("cap"))
    ranked = candidates.join(caps, on="family", how="left").with_column(
        "order", F.hash(col("qa_id"), lit("balance"), seed=seed))
    ranked = ranked.with_column("rank_in_cell", F.row_number().over(
        Window().partition_by("family", "cell").order_by("order")))
    surplus = col("cap").not_null() & (col("rank_in_cell") > col("cap"))
    ranked = ranked.with_column("reject", F.when(surplus, lit(BALANCE_RULE)).otherwise(col("reject")))
    return ranked.select(*columns).concat(judged.where(~eligible).select(*columns))
