"""The sampler's reads of the qa table: two scans of a few columns, then the chosen rows.

Both scans stream Lance batches of only the columns they need into DuckDB (bounded by its memory
limit, spilling into the database's own scratch folder, forge.spill), so memory follows the cells and
the sample, not the table:
- `count_cells`: rows per cell (family × stratify values) among the rows `--where` and `--split` keep;
- `pick_candidates`: the rows whose seeded order falls under their cell's threshold — a little more
  than the quotas — with their offset and `question_key` (forge.question_keys: dedup and the split read
  it, not the text; a table written before the key existed has it computed from image_id and question
  as the scan goes);
- `take_columns`: a few columns of some rows by offset (the texts of rows whose keys repeat, a dry run's
  answers); `read_rows`: every column of the chosen rows, by Lance `take` for a small share of the table
  and by one filtered scan for a larger one (take decodes a page per row: measured, bench/RESULTS.md).
The connection is read-only like `forge query`'s, and Ctrl-C stops DuckDB (forge.stopping).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import duckdb
import lance
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from forge.errors import ForgeError
from forge.progress import ProgressFactory
from forge.query import READ_ONLY
from forge.question_keys import question_keys
from forge.sampling.order import order_of
from forge.spill import spill_folder
from forge.stopping import run_stoppable

BATCH_ROWS = 1 << 17  # rows per Lance batch of a scan (measured: 20% faster than 1 << 16 for two text columns)
# Lance reads one fragment at a time, two batches and 32 MB of I/O ahead: on 2 cores, scanning four columns of
# 30M rows took 1.5 s and 0.34 GiB so, against 2.5 s and 0.6 GiB with its defaults (bench/RESULTS.md)
READ_AHEAD = {"fragment_readahead": 1, "batch_readahead": 2, "io_buffer_size": 32 << 20}
READ_ROWS = 1 << 15  # rows per batch when reading every column
TAKE_ROWS = 1 << 17  # rows read by offset at a time
MEMORY_LIMIT = "768MB"  # DuckDB's share; Lance's batches, the cells and the candidates come on top
TAKE_SHARE = 1 / 75  # below this share of the table, take beats a scan (39 us per taken row, 0.5 us per scanned)
KEY_COLUMN = "question_key"


@dataclass
class Rows:
    """Which qa rows a scan reads: `where` (DuckDB SQL with $params) and one split, both optional."""

    dataset: lance.LanceDataset
    where: str | None = None
    params: dict[str, object] = field(default_factory=dict)
    split: str | None = None
    split_edges: list[tuple[str, float]] = field(default_factory=list)  # (name, upper edge) in order
    keys_stored: bool = field(init=False)  # every row has its question_key (else scans compute it)

    def __post_init__(self) -> None:
        self.keys_stored = keys_stored(self.dataset)

    def key_columns(self) -> list[str]:
        """What a scan reads to give each row its `_key`."""
        return [KEY_COLUMN] if self.keys_stored else ["image_id", "question"]

    def keys(self, batch: pa.RecordBatch) -> pa.Array:
        """The batch's question keys, read or computed."""
        if self.keys_stored:
            return batch.column(KEY_COLUMN)
        return pa.array(question_keys(batch.column("image_id"), batch.column("question")), pa.uint64())

    def condition(self) -> str:
        parts = [f"({self.where})"] if self.where else []
        if self.split is not None:
            parts.append(f"{split_sql(self.split_edges)} = {_literal(self.split)}")
        return " AND ".join(parts) or "TRUE"

    def columns(self) -> list[str]:
        """The columns the condition reads: every qa column named in `where` (a name inside a string is read
        needlessly, which is harmless)."""
        return [c for c in self.dataset.schema.names
                if self.where and re.search(rf"\b{re.escape(c)}\b", self.where, re.IGNORECASE)]


def keys_stored(dataset: lance.LanceDataset) -> bool:
    """Whether every fragment holds the question key in its data files. Every writer computes it
    (forge.store.qa_table), so only a table written before it existed lacks it, or has it as a column
    added without data (null); asked of the metadata, which costs nothing, unlike counting nulls."""
    if KEY_COLUMN not in dataset.schema.names:
        return False
    field_id = dataset.lance_schema.field(KEY_COLUMN).id()
    return all(any(field_id in file.fields for file in fragment.metadata.files) for fragment in dataset.get_fragments())


def split_sql(edges: list[tuple[str, float]]) -> str:
    """The split of a row from its image id's first 32 bits (the high half of its question key), as
    `forge.sample.split_expr` computes it."""
    position = "((_key >> 32) / 4294967296.0)"
    cases = " ".join(f"WHEN {position} < '{edge!r}'::DOUBLE THEN {_literal(name)}" for name, edge in edges[:-1])
    return f"(CASE {cases} ELSE {_literal(edges[-1][0])} END)" if cases else _literal(edges[-1][0])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


@contextmanager
def connection(db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only DuckDB connection with a memory limit, spilling into the database's scratch folder."""
    with spill_folder(db) as spill:
        # joins as written: a streamed scan has no row count, so DuckDB would build its hash table on the
        # table instead of on the cells
        config = {**READ_ONLY, "temp_directory": str(spill), "memory_limit": MEMORY_LIMIT,
                  "threads": os.cpu_count() or 1, "preserve_insertion_order": False,
                  "disabled_optimizers": "join_order,build_side_probe_side"}
        conn = duckdb.connect(config=config)
        try:
            yield conn
        finally:
            with suppress(duckdb.Error):
                conn.close()


@dataclass
class Order:
    """The seed, and per family the highest threshold of its cells: rows above it cannot be candidates."""

    seed: int
    families: pa.Array  # string
    tops: np.ndarray  # uint64, one per family

    def under_top(self, batch: pa.RecordBatch) -> pa.Array:
        """Which rows of the batch lie under their family's top (none of a family without cells to scan)."""
        family = pc.fill_null(pc.index_in(batch.column("family"), value_set=self.families), len(self.tops))
        top = np.append(self.tops, np.uint64(0))[family.to_numpy()]
        return pa.array(batch.column("_ord").to_numpy() <= top)


def _reader(rows: Rows, columns: list[str], bar, order: Order | None = None) -> pa.RecordBatchReader:
    """The table's `columns` in order, with `_key` (the question key) where a split or an order needs it,
    moving a progress bar.

    With `order`: also `_pos` (the row's offset, for `take`) and `_ord` (its seeded order), and only the rows
    under their family's highest threshold, so that DuckDB sees little more than the candidates (and the
    rows of tiny cells)."""
    keyed = order is not None or rows.split is not None
    read = list(dict.fromkeys(columns + rows.columns() + (rows.key_columns() if keyed else [])))
    scanner = rows.dataset.scanner(columns=read, batch_size=BATCH_ROWS, scan_in_order=True, **READ_AHEAD)
    fields = ([pa.field("_key", pa.uint64())] if keyed else []) \
        + ([pa.field("_pos", pa.uint64()), pa.field("_ord", pa.uint64())] if order else [])
    schema = pa.schema([*scanner.projected_schema, *fields])

    def batches() -> Iterator[pa.RecordBatch]:
        start = 0
        for batch in scanner.to_batches():
            count = batch.num_rows
            extra = [rows.keys(batch)] if keyed else []
            if order is not None:
                extra += [pa.array(np.arange(start, start + count, dtype=np.uint64)),
                          pa.array(order_of(batch.column("qa_id"), order.seed))]
            out = pa.RecordBatch.from_arrays([*batch.columns, *extra], schema=schema)
            if order is not None:
                out = out.filter(order.under_top(out))
            yield out
            start += count
            bar.update(count)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _query(conn: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> pa.Table:
    """Run one statement (a `where` cannot smuggle in a second one), stoppable by Ctrl-C; ForgeError on bad SQL."""
    try:
        if len(duckdb.extract_statements(sql)) != 1:
            raise ForgeError("--where: write one SQL condition (no ';'), e.g. \"margin > 0.2\"")
        return run_stoppable(lambda: conn.sql(sql, params=params or None).to_arrow_table(), conn.interrupt, None)
    except duckdb.Error as exc:
        raise ForgeError(f"query failed: {' '.join(str(exc).split())}") from None


@contextmanager
def _scan(conn: duckdb.DuckDBPyConnection, rows: Rows, columns: list[str], progress: ProgressFactory,
          label: str, order: Order | None = None) -> Iterator[None]:
    """The table's needed columns visible to `conn` as `scan` while the block runs."""
    with progress(label, rows.dataset.count_rows(), "rows") as bar:
        conn.register("scan", _reader(rows, columns, bar, order))
        try:
            yield
        finally:
            conn.unregister("scan")


def check_condition(conn: duckdb.DuckDBPyConnection, rows: Rows) -> None:
    """ForgeError now, before any scan, when `where` does not parse or names what the qa table lacks."""
    empty = rows.dataset.schema.empty_table()
    conn.register("scan", empty.append_column("_key", pa.array([], pa.uint64())))
    try:
        _query(conn, f"SELECT count(*) FROM scan WHERE {rows.condition()}", rows.params)
    finally:
        conn.unregister("scan")


def count_cells(conn: duckdb.DuckDBPyConnection, rows: Rows, strata: list[str], every_family: bool,
                progress: ProgressFactory) -> pl.DataFrame:
    """Rows per (family, *strata) that the condition keeps, as `rows`, sorted by family and then the strata's
    values (nulls first: the order that breaks ties between cells). With `every_family`, families whose rows
    the condition drops are listed too (as cells of 0 rows): `--n` alone shares over every family.

    DuckDB sorts them, within its memory limit: sorting millions of cells (a near-unique stratify column)
    in Polars took a third more memory than everything else the sampler holds (bench/RESULTS.md)."""
    keys = ", ".join(quoted(c) for c in ["family", *strata])
    order = ", ".join(f"{quoted(c)} NULLS FIRST" for c in ["family", *strata])
    condition = rows.condition()
    if every_family:
        sql = f"SELECT {keys}, count(*) FILTER (WHERE {condition}) AS rows FROM scan GROUP BY ALL ORDER BY {order}"
    else:
        sql = f"SELECT {keys}, count(*) AS rows FROM scan WHERE {condition} GROUP BY ALL ORDER BY {order}"
    with _scan(conn, rows, ["family", *strata], progress, "sampling: counting cells"):
        return pl.from_arrow(_query(conn, sql, rows.params))


def pick_candidates(conn: duckdb.DuckDBPyConnection, rows: Rows, strata: list[str], cells: pa.Table, seed: int,
                    progress: ProgressFactory) -> pl.DataFrame:
    """Rows under their cell's threshold: cell, ord (seeded order), pos (offset) and key (question key).

    `cells` holds family, the strata, `cell` (an id) and `threshold` (uint64) for the cells to scan. The
    scan reads family, the strata, qa_id and the question key only."""
    tops = pl.from_arrow(cells).group_by("family").agg(pl.col("threshold").max())
    families = pa.array(tops.get_column("family").to_list(), rows.dataset.schema.field("family").type)
    order = Order(seed, families, tops.get_column("threshold").to_numpy())
    conn.register("cells", cells)
    try:
        wanted = list(dict.fromkeys(["family", *strata, "qa_id"]))
        same = " AND ".join(f"c.{quoted(c)} IS NOT DISTINCT FROM s.{quoted(c)}" for c in strata) or "TRUE"
        sql = (f"SELECT c.cell, s._ord AS ord, s._pos AS pos, s._key AS key FROM "
               f"(SELECT * FROM scan WHERE {rows.condition()}) s "
               f"JOIN cells c ON c.family = s.family AND {same} AND s._ord <= c.threshold")
        with _scan(conn, rows, wanted, progress, "sampling: choosing rows", order):
            return pl.from_arrow(_query(conn, sql, rows.params))
    finally:
        conn.unregister("cells")


def take_columns(dataset: lance.LanceDataset, positions: np.ndarray, columns: list[str]) -> pl.DataFrame:
    """The `columns` of the rows at `positions` (offsets, each once), in the order given; read in offset
    order a slice at a time (a take of a million rows at once holds several times their size)."""
    if not columns:
        return pl.DataFrame(height=len(positions))
    order = np.argsort(positions, kind="stable")
    ordered = positions[order]
    parts = [pl.from_arrow(dataset.take(ordered[start:start + TAKE_ROWS], columns=columns))
             for start in range(0, len(ordered), TAKE_ROWS)]
    read = pl.concat(parts) if parts else pl.from_arrow(dataset.schema.empty_table().select(columns))
    return read[np.argsort(order, kind="stable")]


def read_rows(dataset: lance.LanceDataset, chosen: pl.DataFrame, progress: ProgressFactory) -> pa.Table:
    """Every column of the chosen rows (by their offsets `pos`), in the order of `chosen`."""
    positions = np.sort(chosen.get_column("pos").to_numpy())
    total = dataset.count_rows()
    if not len(positions):
        return dataset.schema.empty_table()
    by_take = len(positions) < total * TAKE_SHARE
    with progress("sampling: reading chosen rows", len(positions) if by_take else total, "rows") as bar:
        if by_take:
            table = dataset.take(positions)
            bar.update(len(positions))
        else:
            table = _filtered_scan(dataset, positions, bar)
    return table.take(np.searchsorted(positions, chosen.get_column("pos").to_numpy()))


def _filtered_scan(dataset: lance.LanceDataset, positions: np.ndarray, bar) -> pa.Table:
    """One scan of every column in table order, keeping the rows at the sorted offsets `positions`."""
    kept, start = [], 0
    for batch in dataset.scanner(batch_size=READ_ROWS, scan_in_order=True, **READ_AHEAD).to_batches():
        lo, hi = np.searchsorted(positions, [start, start + batch.num_rows])
        if hi > lo:
            kept.append(batch.take(pa.array(positions[lo:hi] - start)))
        start += batch.num_rows
        bar.update(batch.num_rows)
    return pa.Table.from_batches(kept, schema=dataset.schema)
