"""The LanceDB database a build writes: the `qa` table and the `builds` log.

Rebuilding never duplicates rows: QA rows are merged on `qa_id`, and rows from an older
version of the same spec (same `spec_name`, other `spec_hash`) are removed, so the table
always holds one version of each spec's questions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lancedb
import pyarrow as pa
from lancedb.index import Bitmap, BTree

from forge.errors import ForgeError

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
    ]
)

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
QA_INDEXES = {"family": Bitmap, "answer_type": Bitmap, "spec_name": Bitmap, "depth_kind": Bitmap,
              "qa_id": BTree, "image_id": BTree, "answer": BTree, "margin": BTree}
COMPACT_SMALL_FRAGMENTS = 8


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    already_present: int
    stale_removed: int


class Store:
    """One LanceDB database folder (default `./forge.lancedb`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ForgeError(f"--db {self.path}: exists and is not a folder; give a new or existing database folder")
        self.db = lancedb.connect(str(self.path))

    def table(self, name: str, schema: pa.Schema):
        """Open table `name`, creating it empty when missing; refuse one with another schema."""
        if name in self.db.list_tables().tables:
            table = self.db.open_table(name)
            if table.schema != schema:
                raise ForgeError(f"{self.path}: table {name!r} has another schema than this forge version writes; build into a new --db")
            return table
        return self.db.create_table(name, schema=schema)

    def write_qa(self, rows: pa.Table, spec_name: str, spec_hash: str, table_name: str = "qa") -> WriteResult:
        """Insert new rows and drop the spec's older-version rows in one commit.

        A build killed before this commit leaves the previous table untouched; readers never see
        a half-written build. Rows already present (same qa_id) are left as they are.
        """
        rows = rows.cast(QA_SCHEMA).sort_by("qa_id")
        table = self.table(table_name, QA_SCHEMA)
        stale_filter = f"spec_name = '{spec_name}' AND spec_hash != '{spec_hash}'"
        stale = table.count_rows(stale_filter)
        before = table.count_rows()
        merge = table.merge_insert("qa_id").when_not_matched_insert_all()
        if stale:
            merge = merge.when_not_matched_by_source_delete(stale_filter)
        if rows.num_rows or stale:
            merge.execute(rows)
        inserted = table.count_rows() - before + stale
        return WriteResult(inserted=inserted, already_present=rows.num_rows - inserted, stale_removed=stale)

    def maintain(self, table_name: str = "qa") -> None:
        """Create missing scalar indexes; index new rows and compact once small fragments pile up."""
        table = self.db.open_table(table_name)
        indexed = {index.columns[0] for index in table.list_indices()}
        for column, kind in QA_INDEXES.items():
            if column not in indexed:
                table.create_index(column, config=kind())
        stats = table.stats()
        unindexed = any(index.num_unindexed_rows for index in table.list_indices())
        if unindexed or stats["fragment_stats"]["num_small_fragments"] >= COMPACT_SMALL_FRAGMENTS:
            table.optimize()

    def record_errors(self, failures: list[tuple[str, str]], spec_name: str, build_id: str) -> None:
        """Remember skipped images and why (one row per image and spec; a rebuild updates it)."""
        if not failures:
            return
        rows = pa.Table.from_pylist([{"image_uri": uri, "spec_name": spec_name, "reason": reason, "build_id": build_id}
                                     for uri, reason in failures], schema=ERRORS_SCHEMA)
        table = self.table("errors", ERRORS_SCHEMA)
        table.merge_insert(["image_uri", "spec_name"]).when_matched_update_all().when_not_matched_insert_all().execute(rows)

    def record_build(self, record: dict) -> None:
        row = dict(record, funnel=json.dumps(record["funnel"]))  # keeps the rules' order
        self.table("builds", BUILDS_SCHEMA).add(pa.Table.from_pylist([row], schema=BUILDS_SCHEMA))
