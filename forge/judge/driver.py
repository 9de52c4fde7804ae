"""Judging a whole build, a chunk at a time, as one Daft plan over the chunks.

Each pass is a Daft frame with one row per chunk and a class UDF that judges it: on the native
runner in this process, on Daft's Ray runner on the cluster's workers. In the first pass a worker
reads its chunk of records, judges it with Polars and stages the counts and the verified
candidates; in the second it phrases the candidates its chunk keeps and writes them as Lance data
files. Only chunk numbers travel back, so no process ever holds more than a chunk's candidates.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import daft
import numpy as np
import polars as pl
from daft import col

from forge.judge.balance import Limits
from forge.judge.chunk import Judge
from forge.perception.table import RecordTable
from forge.progress import ProgressFactory
from forge.spec.load import LoadedSpec
from forge.staging import Staging
from forge.store import Store

COUNT, WRITE = "count", "write"


@dataclass(frozen=True)
class ChunkPlan:
    """Everything a worker needs to judge any chunk (picklable: it travels to Ray workers)."""

    loaded: LoadedSpec
    seed: int
    table: RecordTable
    ranges: tuple[tuple[int, int], ...]  # (first row, rows) of each chunk in the table
    db: Path
    table_name: str
    staging: Path
    limits: dict | None = None  # the balance limits, for the second pass

    @property
    def chunks(self) -> int:
        return len(self.ranges)

    def images(self, chunk: int) -> int:
        return self.ranges[chunk][1]

    def records(self, chunk: int, duplicates: np.ndarray) -> pl.DataFrame:
        """The chunk's records, without its `duplicates` (row numbers in the table of images seen earlier)."""
        start, count = self.ranges[chunk]
        frame = self.table.read(start, count)
        if len(duplicates):
            frame = frame.with_row_index("row").filter(~pl.col("row").is_in(duplicates - start)).drop("row")
        return frame


def here() -> str:
    """This process, as host:pid (which worker judged a chunk)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _Worker:
    """Judges chunks; one per worker process, the spec compiled once."""

    def __init__(self, plan: ChunkPlan, phase: str):
        self.plan, self.phase = plan, phase
        self.judge = Judge(plan.loaded, plan.seed)
        self.staging = Staging(Store(plan.db), plan.staging)
        self.limits = Limits.from_json(plan.limits) if plan.limits is not None else None

    def __call__(self, chunk: int) -> int:
        staging = self.staging
        if self.phase == COUNT:
            counted = self.judge.count(self.plan.records(chunk, np.load(staging.path("duplicates", chunk))))
            if counted.cells is not None:
                staging.write("cells", chunk, lambda tmp: counted.cells.write_ipc(tmp))
            for family, frame in {**counted.verified, "images": counted.images_out}.items():
                staging.write("verified", chunk, lambda tmp, f=frame: f.write_ipc(tmp, compression="lz4"), part=family)
            staging.write_json("counted", chunk, {  # last: a chunk is counted once this file exists
                "images": counted.images, "objects": counted.objects, "over_cap": counted.over_cap,
                "failures": counted.failures,
                "funnel": counted.funnel, "worker": here()})
        else:
            parts = {f.name: pl.read_ipc(staging.path("verified", chunk, f.name)) for f in self.judge.families}
            images = pl.read_ipc(staging.path("verified", chunk, "images"))
            rows, boundary = self.judge.phrase(parts, images, self.limits)
            fragments = staging.store.stage_rows(self.plan.table_name, rows)
            if not boundary.is_empty():
                staging.write("boundary", chunk, lambda tmp: boundary.write_ipc(tmp))
            staging.write_json("written", chunk, {"rows": rows.num_rows, "fragments": fragments})
            for family in [*parts, "images"]:  # phrased: no longer needed
                staging.path("verified", chunk, family).unlink()
        return self.plan.images(chunk)


def run_pass(plan: ChunkPlan, phase: str, todo: list[int], concurrency: int, progress: ProgressFactory,
             label: str) -> None:
    """Judge chunks `todo` in one Daft plan; the bar counts images as their chunks finish."""
    if not todo:
        return
    # in this process on the native runner (a concurrency would start a pool of processes); actors on Ray
    options = {"max_concurrency": concurrency} if concurrency > 1 else {"use_process": False}
    worker = daft.cls(_Worker, **options)(plan, phase)
    frame = daft.from_pydict({"chunk": todo}).into_batches(1)
    done = frame.select(worker(col("chunk")).alias("images"))
    with progress(label, sum(plan.images(c) for c in todo), "images") as bar:
        for batch in done.to_arrow_iter():
            bar.update(int(sum(batch.column("images").to_pylist())))
