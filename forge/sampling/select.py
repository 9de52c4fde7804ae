"""From the candidates a scan found to the sample: each cell's first rows in seeded order, each question once.

The rule, over all rows of the sampled cells: walk them in seeded order (every cell at once) and take a
row when its cell still has room and no row already taken asks the same question about the same image
(an identical question on one image, e.g. from two specs, is one sample). A skipped duplicate leaves the
room to the cell's next row. Only candidates are walked: a cell's walk ends inside its threshold when the
cell fills there, and a row can only be skipped for a taken one, which is a candidate too. A cell that
does not fill inside its threshold is reported short; the caller widens its threshold and walks again.

Rows whose question key appears once among the candidates (nearly all) are settled with column
operations; only rows whose key repeats have their image id and question read (`texts`), and those whose
question repeats are walked one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl

KEY = ["image_id", "question"]


@dataclass
class Selection:
    taken: pl.DataFrame  # the candidates taken, in seeded order
    obtained: np.ndarray  # rows taken per cell id
    skipped: int  # duplicate questions walked past


def select(candidates: pl.DataFrame, quota: np.ndarray, texts: Callable[[np.ndarray], pl.DataFrame]) -> Selection:
    """Take each cell's quota (by cell id) from `candidates` (columns cell, ord, pos, key: the question key).

    `texts(positions)` gives the image_id and question of the rows at those offsets, in that order; it is
    asked only for rows whose key or order repeats. The walk runs over slim columns, and the chosen rows are
    gathered once: memory stays near the candidates' own size."""
    index = candidates.select(pl.arg_sort_by("ord")).to_series()
    ordered = candidates.get_column("ord").gather(index).to_numpy()
    if (ordered[1:] == ordered[:-1]).any():  # the same qa_id twice: the old rule, by cell and then the text
        named = candidates.filter(_repeats(candidates.get_column("ord").to_numpy())).select("pos")
        candidates = candidates.join(pl.concat([named, texts(named.get_column("pos").to_numpy())], how="horizontal"),
                                     on="pos", how="left", maintain_order="left")
        index = candidates.select(pl.arg_sort_by(["ord", "cell", *KEY])).to_series()
    walk = candidates.select("cell", "key")[index]
    cell = walk.get_column("cell").to_numpy().astype(np.int64)
    room = quota[cell]
    repeated = np.zeros(walk.height, dtype=bool)
    maybe = np.flatnonzero(_repeats(walk.get_column("key").to_numpy()))  # equal questions have equal keys
    if len(maybe):
        keys = texts(candidates.get_column("pos").gather(index.gather(maybe)).to_numpy()).select(KEY)
        repeated[maybe] = keys.is_duplicated().to_numpy()
        eligible, skipped = _walk_repeated(cell, room, repeated, maybe, keys.select(pl.struct(KEY).rank("dense")))
    else:
        eligible, skipped = np.ones(walk.height, dtype=bool), 0
    take = eligible & (_before_in_cell(cell, eligible) < room)
    taken = candidates.select("cell", "ord", "pos", "key")[index.gather(np.flatnonzero(take))]
    obtained = np.bincount(cell[take], minlength=len(quota))
    return Selection(taken, obtained, skipped)


def _walk_repeated(cell: np.ndarray, room: np.ndarray, repeated: np.ndarray, maybe: np.ndarray,
                   key_rank: pl.DataFrame) -> tuple[np.ndarray, int]:
    """Which rows (in walk order) may be taken: every row whose question is unique among the candidates, and
    each repeated question's first row met while its cell had room; and how many repeats were skipped.
    `maybe` are the walk positions of `key_rank` (one key id per row), which hold every repeated row."""
    unique = ~repeated
    before = _before_in_cell(cell, unique)
    eligible = unique.copy()
    used: set[int] = set()
    taken_in: dict[int, int] = {}
    skipped = 0
    for row, key in zip(maybe.tolist(), key_rank.to_series().to_list()):
        if not repeated[row]:
            continue
        here = int(cell[row])
        if before[row] + taken_in.get(here, 0) >= room[row]:
            continue  # the cell is full before this row
        if key in used:
            skipped += 1
            continue
        used.add(key)
        taken_in[here] = taken_in.get(here, 0) + 1
        eligible[row] = True
    return eligible, skipped


def _repeats(values: np.ndarray) -> np.ndarray:
    """Which entries equal another entry (numpy: a sort, not a hash table of every candidate)."""
    order = np.argsort(values, kind="stable")
    same = values[order][1:] == values[order][:-1]
    flags = np.zeros(len(values), dtype=bool)
    flags[order[1:][same]] = True
    flags[order[:-1][same]] = True
    return flags


def _before_in_cell(cell: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Per row (in walk order), how many flagged rows come before it in its cell."""
    order = np.argsort(cell, kind="stable")  # each cell's rows together, still in walk order
    counts = np.cumsum(flags[order]) - flags[order]
    starts = np.flatnonzero(np.r_[True, cell[order][1:] != cell[order][:-1]])
    counts -= np.repeat(counts[starts], np.diff(np.r_[starts, len(order)]))
    before = np.empty(len(cell), dtype=np.int64)
    before[order] = counts
    return before
