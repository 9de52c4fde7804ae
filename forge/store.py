"""The LanceDB database a build writes: the `qa` table, the `builds` log, `errors`; and the one
owner of the QA record's schema.

A build writes its rows as Lance data files while it runs (`stage_rows`), invisible to readers,
and makes them visible in one commit at the end (`commit_rows`) that also removes the rows of
the spec's previous build, so the table holds exactly one build of each spec and a reader sees
either the old build or the new one, never a mix.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import lance
import lancedb
import pyarrow as pa
from lance.fragment import FragmentMetadata, write_fragments
from lancedb.index import Bitmap, BTree

from forge.errors import ForgeError
from forge.question_keys import question_keys

BOX = pa.list_(pa.float64())
QA_SCHEMA = pa.schema(
    [
        pa.field("qa_id", pa.string(), nullable=False),
        pa.field("image_id", pa.string()),
        pa.field("image_uri", pa.string()),
        pa.field("family", pa.string()),
        pa.field("template_id", pa.string()),
        pa.field("question", pa.string()),
        pa.field("answer", pa.string()),
        pa.field("answer_type", pa.string()),
        pa.field("choices", pa.list_(pa.string())),
        pa.field("objects", pa.list_(pa.struct([pa.field("label", pa.string()), pa.field("box", BOX)]))),
        pa.field("margin", pa.float64()),
        pa.field("spec_name", pa.string()),
        pa.field("spec_hash", pa.string()),
        pa.field("perception", pa.string()),
        pa.field("depth_kind", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("source_dataset", pa.string()),
        pa.field("source_meta", pa.string()),
        # the camera and gravity the answer was computed with (perception/camera.py, gravity.py)
        pa.field("fx", pa.float64()),
        pa.field("fy", pa.float64()),
        pa.field("cx", pa.float64()),
        pa.field("cy", pa.float64()),
        pa.field("camera_source", pa.string()),
        pa.field("gravity_source", pa.string()),
        # the annotation ids of the objects a row names, in `objects` order (annotated datasets; else null)
        pa.field("annotation_ids", pa.list_(pa.string())),
        # derived from image_id and question (forge/question_keys.py): what sampling reads for dedup and splits
        pa.field("question_key", pa.uint64()),
    ]
)
QA_MADE = [name for name in QA_SCHEMA.names if name != "question_key"]  # the columns a build makes; `qa_table` adds the rest

BUILDS_SCHEMA = pa.schema(
    [
        pa.field("build_id", pa.string()),
        pa.field("spec_name", pa.string()),
        pa.field("spec_hash", pa.string()),
        pa.field("spec_path", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("started_at", pa.string()),
        pa.field("seconds", pa.float64()),
        pa.field("images", pa.int64()),
        pa.field("images_failed", pa.int64()),
        pa.field("qa_rows", pa.int64()),
        pa.field("qa_inserted", pa.int64()),
        pa.field("funnel", pa.string()),
    ]
)


ERRORS_SCHEMA = pa.schema(
    [
        pa.field("image_uri", pa.string()),
        pa.field("spec_name", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("build_id", pa.string()),
    ]
)


# the columns people filter by: bitmaps for few distinct values, B-trees for many or for ranges
QA_INDEXES = {"family": Bitmap, "answer_type": Bitmap, "spec_name": Bitmap, "depth_kind": Bitmap, "camera_source": Bitmap,
              "qa_id": BTree, "image_id": BTree, "answer": BTree, "margin": BTree}
COMPACT_SMALL_FRAGMENTS = 8  # compact once this many fragments of fewer than SMALL_FRAGMENT_ROWS pile up
SMALL_FRAGMENT_ROWS = 10_000  # a chunk of a big build writes far more: its fragments are never rewritten


ROWS_PER_FILE = 1 << 20
LOCK_FILE = ".forge-build.lock"


@dataclass(frozen=True)
class WriteResult:
    rows: int  # rows of this build, now in the table
    replaced: int  # rows of earlier builds of the spec that it replaced
    stale: int  # of those, rows of an older version of the spec (another spec hash)


def qa_table(made: pa.Table) -> pa.Table:
    """QA records from the columns a build makes (QA_MADE): the derived `question_key` is added here, the one
    place every writer goes through."""
    made = made.select(QA_MADE)
    keys = question_keys(made.column("image_id"), made.column("question"))
    return made.append_column("question_key", pa.array(keys, pa.uint64())).cast(QA_SCHEMA)


def _older(found: pa.Schema, wanted: pa.Schema) -> bool:
    """Whether `found` is `wanted` without its last columns (which an earlier forge did not write)."""
    return len(found) < len(wanted) and all(found.field(i) == wanted.field(i) for i in range(len(found)))


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Store:
    """One LanceDB database folder (default `./forge.lancedb`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ForgeError(f"--db {self.path}: exists and is not a folder; give a new or existing database folder")
        self.db = lancedb.connect(str(self.path))

    def table(self, name: str, schema: pa.Schema):
        """Open table `name`, creating it empty when missing. A table an earlier forge wrote, whose columns
        are the first of `schema`'s, gains the later ones (null in its rows); any other schema is refused."""
        if name in self.db.list_tables().tables:
            table = self.db.open_table(name)
            if table.schema != schema and _older(table.schema, schema):
                table.add_columns([field.with_nullable(True) for field in schema if field.name not in table.schema.names])
                table = self.db.open_table(name)
            if table.schema != schema:
                raise ForgeError(f"{self.path}: table {name!r} has another schema than this forge version writes; build into a new --db")
            return table
        return self.db.create_table(name, schema=schema)

    @contextmanager
    def build_lock(self, spec_name: str, echo: Callable[[str], None]) -> Iterator[None]:
        """Hold the database's build lock: builds into one database run one at a time (a second one waits,
        saying for whom), so two commits, index builds or staging folders never interleave. The kernel
        releases the lock when its holder dies, however it dies."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK_FILE, "a+") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                holder = file.read().strip() or "another forge build"
                echo(f"waiting: {holder} is writing into {self.path}; this build starts when it ends")
                fcntl.flock(file, fcntl.LOCK_EX)
            file.seek(0)
            file.truncate()
            file.write(f"forge build of spec {spec_name} (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})")
            file.flush()
            try:
                yield
            finally:
                file.seek(0)
                file.truncate()
                fcntl.flock(file, fcntl.LOCK_UN)

    def stage_rows(self, table_name: str, rows: pa.Table) -> list[dict]:
        """Write rows as data files of the (existing) table without committing them; their fragment metadata."""
        if not rows.num_rows:
            return []
        fragments = write_fragments(rows.cast(QA_SCHEMA), self.path / f"{table_name}.lance", schema=QA_SCHEMA,
                                    max_rows_per_file=ROWS_PER_FILE)
        return [fragment.to_json() for fragment in fragments]

    def discard_rows(self, table_name: str, fragments: list[dict]) -> None:
        """Delete staged data files that were never committed (an abandoned build's)."""
        uri = self.path / f"{table_name}.lance"
        if not uri.exists():
            return
        committed = {f.path for fragment in lance.dataset(uri).get_fragments() for f in fragment.data_files()}
        for fragment in fragments:
            for data in FragmentMetadata.from_json(json.dumps(fragment)).files:
                if data.path not in committed:
                    (uri / "data" / data.path).unlink(missing_ok=True)

    def committed(self, table_name: str, fragments: list[dict]) -> bool:
        """Whether staged rows are in the table already (a build that died right after its commit)."""
        uri = self.path / f"{table_name}.lance"
        if not fragments or not uri.exists():
            return False
        staged = {data.path for f in fragments for data in FragmentMetadata.from_json(json.dumps(f)).files}
        return any({d.path for d in fragment.data_files()} <= staged for fragment in lance.dataset(uri).get_fragments())

    def planned_write(self, table_name: str, spec_name: str, spec_hash: str, fragments: list[dict]) -> WriteResult:
        """What committing staged rows will do: rows added, the spec's earlier rows replaced."""
        self.table(table_name, QA_SCHEMA)
        dataset = lance.dataset(self.path / f"{table_name}.lance")
        ours = f"spec_name = {_quoted(spec_name)}"
        replaced = dataset.count_rows(ours)
        stale = dataset.count_rows(f"{ours} AND spec_hash != {_quoted(spec_hash)}") if replaced else 0
        rows = sum(FragmentMetadata.from_json(json.dumps(f)).physical_rows for f in fragments)
        return WriteResult(rows=rows, replaced=replaced, stale=stale)

    def commit_rows(self, table_name: str, spec_name: str, fragments: list[dict]) -> None:
        """Make staged rows visible and remove the spec's earlier rows, in one Lance commit."""
        self.table(table_name, QA_SCHEMA)
        uri = self.path / f"{table_name}.lance"
        dataset = lance.dataset(uri)
        removed, updated = [], []
        for fragment in dataset.get_fragments():
            kept = fragment.delete(f"spec_name = {_quoted(spec_name)}")  # a deletion file, invisible until the commit
            if kept is None:
                removed.append(fragment.fragment_id)
            elif kept != fragment.metadata:
                updated.append(kept)
        new = [FragmentMetadata.from_json(json.dumps(f)) for f in fragments]
        operation = lance.LanceOperation.Update(removed_fragment_ids=removed, updated_fragments=updated, new_fragments=new)
        lance.LanceDataset.commit(uri, operation, read_version=dataset.version)

    def maintain(self, table_name: str = "qa") -> None:
        """Create missing scalar indexes and index new rows; compact only once small fragments pile up.

        A big build writes fragments of a chunk's rows each, which need no compaction; rewriting them
        would cost as much as writing them.
        """
        table = self.db.open_table(table_name)
        indexed = {index.columns[0] for index in table.list_indices()}
        missing = [(column, kind) for column, kind in QA_INDEXES.items() if column not in indexed]

        def create(item: tuple[str, type]) -> None:  # each index in its own thread: half the time on 2 cores
            lancedb.connect(str(self.path)).open_table(table_name).create_index(item[0], config=item[1]())

        with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
            futures = [pool.submit(create, item) for item in missing]
        failed = [item for item, future in zip(missing, futures) if future.exception() is not None]
        for item in failed:  # a commit conflict between two index builds: this one again, alone
            create(item)
        table = self.db.open_table(table_name)  # the version with the new indexes
        small = sum(1 for f in lance.dataset(self.path / f"{table_name}.lance").get_fragments()
                    if f.metadata.physical_rows < SMALL_FRAGMENT_ROWS)
        if small >= COMPACT_SMALL_FRAGMENTS:
            table.optimize()
        elif any(index.num_unindexed_rows for index in table.list_indices()):
            lance.dataset(self.path / f"{table_name}.lance").optimize.optimize_indices()

    def record_errors(self, failures: Iterable[list[tuple[str, str]]], spec_name: str, build_id: str) -> None:
        """Remember the images this build of the spec skipped and why, one row per image, replacing the spec's
        rows of earlier builds. `failures` come a chunk at a time and are streamed into the table."""
        batches = (pa.RecordBatch.from_pydict({"image_uri": [uri for uri, _ in chunk], "spec_name": [spec_name] * len(chunk),
                                               "reason": [reason for _, reason in chunk], "build_id": [build_id] * len(chunk)},
                                              schema=ERRORS_SCHEMA) for chunk in failures if chunk)
        first = next(batches, None)
        if first is None and "errors" not in self.db.list_tables().tables:
            return
        table = self.table("errors", ERRORS_SCHEMA)
        table.delete(f"spec_name = {_quoted(spec_name)}")
        if first is not None:
            table.add(pa.RecordBatchReader.from_batches(ERRORS_SCHEMA, itertools.chain([first], batches)))

    def record_build(self, record: dict) -> None:
        row = dict(record, funnel=json.dumps(record["funnel"]))  # keeps the rules' order
        self.table("builds", BUILDS_SCHEMA).add(pa.Table.from_pylist([row], schema=BUILDS_SCHEMA))
