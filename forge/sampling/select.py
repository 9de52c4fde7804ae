"""From the candidates a scan found to the sample: each cell's first rows in seeded order, each question once.

The rule, over all rows of the sampled cells: walk them in seeded order (every cell at once) and take a
row when its cell still has room and no row already taken asks the same question about the same image
(an identical question on one image, e.g. from two specs, is one sample). A skipped duplicate leaves the
room to the cell's next row. Only candidates are walked: a cell's walk ends inside its threshold when the
cell fills there, and a row can only be skipped for a taken one, which is a candidate too. A cell that
does not fill inside its threshold is reported short; the caller widens its threshold and walks again.

Rows whose question appears once among the candidates (nearly all) are settled with column operations;
only rows whose question repeats are walked one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

KEY = ["image_id", "question"]


@dataclass
class Selection:
    taken: pl.DataFrame  # the candidates taken, in seeded order
    obtained: np.ndarray  # rows taken per cell id
    skipped: int  # duplicate questions walked past


def select(candidates: pl.DataFrame, quota: np.ndarray) -> Selection:
    """Take each cell's quota (by cell id) from `candidates` (columns cell, ord, image_id, question, ...)."""
    order = ["ord"] if not candidates.get_column("ord").is_duplicated().any() else ["ord", "cell", *KEY]
    walk = candidates.sort(order)
    walk = walk.with_columns(room=pl.Series(quota[walk.get_column("cell").to_numpy()], dtype=pl.Int64),
                             repeated=pl.struct(KEY).is_duplicated())
    skipped = 0
    if walk.get_column("repeated").any():
        eligible, skipped = _walk_repeated(walk)
    else:
        eligible = pl.Series(np.ones(walk.height, dtype=bool))
    walk = walk.with_columns(eligible=eligible)
    rank = (pl.col("eligible").cast(pl.Int64).cum_sum() - 1).over("cell")
    taken = walk.filter(pl.col("eligible") & (rank < pl.col("room"))).drop("room", "repeated", "eligible")
    obtained = np.bincount(taken.get_column("cell").to_numpy(), minlength=len(quota))
    return Selection(taken, obtained, skipped)


def _walk_repeated(walk: pl.DataFrame) -> tuple[pl.Series, int]:
    """Which rows may be taken: every row whose question is unique among the candidates, and each repeated
    question's first row met while its cell had room; and how many repeats were skipped."""
    unique = ~pl.col("repeated")
    before = walk.select((unique.cast(pl.Int64).cum_sum() - unique.cast(pl.Int64)).over("cell").alias("n"))
    repeated = walk.with_columns(before=before.get_column("n")).with_row_index("row").filter(pl.col("repeated"))
    repeated = repeated.with_columns(key=pl.struct(KEY).rank("dense"))
    eligible = ~walk.get_column("repeated").to_numpy()
    used: set[int] = set()
    taken_in: dict[int, int] = {}
    skipped = 0
    for row, cell, room, unique_before, key in repeated.select("row", "cell", "room", "before", "key").iter_rows():
        if unique_before + taken_in.get(cell, 0) >= room:
            continue  # the cell is full before this row
        if key in used:
            skipped += 1
            continue
        used.add(key)
        taken_in[cell] = taken_in.get(cell, 0) + 1
        eligible[row] = True
    return pl.Series(eligible), skipped
