"""Answer balancing by seeded rejection, CLEVR-style, across a whole build in bounded memory.

Within a family, kept rows fall into cells: the position of the answer among the choices (A/B,
yes/no, multiple-choice option) or the answer text (open answers such as counts). No cell may
keep more than `max_ratio` x the runner-up cell; an over-full cell keeps the rows with the
smallest seeded hash (`order`). With the default 1.1 the larger side of a two-way answer holds at
most 52.4% of its family. A family whose rows all fall in one cell would teach one constant
answer: the runner-up is empty, so its cap is 0 and the build says so.

Two passes make it global without holding the rows: the first counts kept rows per cell and
histograms their `order` by its top 16 bits; the cap then falls in one bucket of the histogram.
The second pass keeps the buckets below it and sets the rows of that bucket aside; the few set
aside (about a 65,536th of the cell) are sorted at the end and the first ones taken, so every
over-full cell keeps exactly its cap, whatever the chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from forge.judge.hashing import add_hash, salt
from forge.spec.schema import Family

BALANCE_RULE = "balance"
BUCKET_SHIFT = 48  # order >> 48: a 16-bit bucket
BUCKETS = 1 << (64 - BUCKET_SHIFT)


@dataclass(frozen=True)
class Mode:
    by: str  # "position" or "answer"
    max_ratio: float


def mode_for(family: Family, comparative: bool, options_are_data: bool) -> Mode | None:
    """How a family balances; None for families that do not (open answers, unless asked)."""
    by = family.balance.by
    if by == "auto":
        by = "position" if comparative or options_are_data else "none"
    return None if by == "none" else Mode(by, family.balance.max_ratio)


def add_order(frame: pl.DataFrame, keys: list[pl.Expr], family: str, seed: int) -> pl.DataFrame:
    """`order`: the seeded hash by which an over-full cell keeps rows, and its `bucket`.

    It hashes the candidate and its template, not the spec's text: editing a phrasing elsewhere in
    the spec does not reshuffle which rows a family keeps.
    """
    frame = add_hash(frame, "order", ["key", *keys, "pick"], salt("balance", family, seed))
    return frame.with_columns(bucket=(pl.col("order") // (1 << BUCKET_SHIFT)).cast(pl.Int32))


def histogram(kept: pl.DataFrame) -> pl.DataFrame:
    """Rows per (cell, bucket) of a family's kept rows (columns cell, bucket, rows)."""
    return kept.group_by("cell", "bucket").agg(rows=pl.len()).sort("cell", "bucket")


@dataclass(frozen=True)
class CellLimit:
    """Keep every row of buckets below `bucket`, and the first `take` (by order) of `bucket`."""

    bucket: int
    take: int


@dataclass(frozen=True)
class Limits:
    """What every family keeps: per over-full cell its limit; counts before and after."""

    cells: dict[str, dict[str, CellLimit]]
    counted: dict[str, dict[str, int]]  # family -> cell -> kept rows before balancing
    caps: dict[str, int]  # family -> rows a cell may keep

    def dropped(self, family: str) -> int:
        cap = self.caps.get(family)
        return 0 if cap is None else sum(max(0, n - cap) for n in self.counted.get(family, {}).values())

    def single_cell(self) -> dict[str, tuple[str, int]]:
        """Families whose kept rows all fall in one cell: family -> (cell, rows)."""
        return {f: next(iter(cells.items())) for f, cells in self.counted.items()
                if f in self.caps and len(cells) == 1}

    def to_json(self) -> dict:
        return {"cells": {f: {c: [v.bucket, v.take] for c, v in cells.items()} for f, cells in self.cells.items()},
                "counted": self.counted, "caps": self.caps}

    @classmethod
    def from_json(cls, data: dict) -> Limits:
        return cls({f: {c: CellLimit(*v) for c, v in cells.items()} for f, cells in data["cells"].items()},
                   data["counted"], data["caps"])


def limits(histograms: dict[str, dict[str, np.ndarray]], modes: dict[str, Mode]) -> Limits:
    """Caps and per-cell limits from the build's histograms (family -> cell -> rows per bucket)."""
    cells: dict[str, dict[str, CellLimit]] = {}
    counted = {f: {c: int(h.sum()) for c, h in by_cell.items()} for f, by_cell in histograms.items()}
    caps: dict[str, int] = {}
    for family, mode in modes.items():
        sizes = sorted(counted.get(family, {}).values(), reverse=True)
        if not sizes:
            continue
        runner_up = sizes[1] if len(sizes) > 1 else 0
        cap = caps[family] = math.floor(runner_up * mode.max_ratio + 1e-9)  # never above the ratio
        for cell, rows in histograms[family].items():
            if int(rows.sum()) > cap:
                below = np.cumsum(rows)
                bucket = int(np.searchsorted(below, cap, side="right"))  # first bucket that would overflow
                before = int(below[bucket - 1]) if bucket else 0
                cells.setdefault(family, {})[cell] = CellLimit(bucket, cap - before)
    return Limits(cells, counted, caps)


def split_kept(kept: pl.DataFrame, family: str, limit: Limits) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows a family keeps for sure, rows of boundary buckets to decide at the end)."""
    by_cell = limit.cells.get(family)
    if not by_cell:
        return kept, kept.clear()
    bounds = pl.DataFrame({"cell": list(by_cell), "limit_bucket": [v.bucket for v in by_cell.values()]},
                          schema={"cell": pl.String, "limit_bucket": pl.Int32})
    marked = kept.join(bounds, on="cell", how="left", maintain_order="left")
    sure = marked.filter(pl.col("limit_bucket").is_null() | (pl.col("bucket") < pl.col("limit_bucket")))
    boundary = marked.filter(pl.col("bucket") == pl.col("limit_bucket"))
    return sure.drop("limit_bucket"), boundary.drop("limit_bucket")


def resolve_boundary(boundary: pl.DataFrame, limit: Limits) -> pl.DataFrame:
    """The boundary rows every over-full cell still takes: its first `take` by order."""
    if boundary.is_empty():
        return boundary
    takes = pl.DataFrame([{"family": f, "cell": c, "take": v.take} for f, cells in limit.cells.items()
                          for c, v in cells.items()], schema={"family": pl.String, "cell": pl.String, "take": pl.Int64})
    ranked = boundary.sort("order", "qa_id").join(takes, on=["family", "cell"], how="left", maintain_order="left")
    ranked = ranked.with_columns(rank=pl.int_range(pl.len()).over("family", "cell"))
    return ranked.filter(pl.col("rank") < pl.col("take")).drop("take", "rank")
