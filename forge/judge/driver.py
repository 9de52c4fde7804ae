"""Judging a whole build, a chunk at a time, as one Daft plan over the chunks.

Each pass is a Daft frame with one row per chunk and a class UDF that judges it: on the native
runner in this process, on Daft's Ray runner on the cluster's workers. A worker reads its chunk
of records from the table, judges it with Polars and writes what it made to the staging folder
(and, in the second pass, the QA rows as Lance data files); only chunk numbers travel back, so no
process ever holds more than a chunk's candidates.
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
    chunk_size: int
    db: Path
    table_name: str
    staging: Path
    limits: dict | None = None  # the balance limits, for the second pass

    @property
    def chunks(self) -> int:
        return -(-self.table.rows // self.chunk_size)

    def images(self, chunk: int) -> int:
        return min(self.chunk_size, self.table.rows - chunk * self.chunk_size)

    def records(self, chunk: int, duplicates: np.ndarray) -> pl.DataFrame:
        """The chunk's records, without images already seen earlier in the table."""
        start = chunk * self.chunk_size
        frame = self.table.read(start, self.chunk_size)
        lo, hi = np.searchsorted(duplicates, [start, start + frame.height])
        if hi > lo:
            frame = frame.with_row_index("row").filter(~pl.col("row").is_in(duplicates[lo:hi] - start)).drop("row")
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
        self.duplicates = np.load(plan.staging / "duplicates.npy")
        self.limits = Limits.from_json(plan.limits) if plan.limits is not None else None

    def __call__(self, chunk: int) -> int:
        records = self.plan.records(chunk, self.duplicates)
        if self.phase == COUNT:
            counted = self.judge.count(records)
            if counted.cells is not None:
                self.staging.write("cells", chunk, lambda tmp: counted.cells.write_ipc(tmp))
            self.staging.write_json("counted", chunk, {
                "images": counted.images, "objects": counted.objects, "failures": counted.failures,
                "funnel": counted.funnel, "worker": here()})
        else:
            rows, boundary = self.judge.phrase(records, self.limits)
            fragments = self.staging.store.stage_rows(self.plan.table_name, rows)
            if not boundary.is_empty():
                self.staging.write("boundary", chunk, lambda tmp: boundary.write_ipc(tmp))
            self.staging.write_json("written", chunk, {"rows": rows.num_rows, "fragments": fragments})
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
