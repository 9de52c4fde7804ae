"""Perception records in a table: Parquet files (a file, folder or glob) or a Lance dataset, read
a chunk of rows at a time.

This is how a build reads perception made elsewhere or earlier (`source: records`), and how it
reads the records it staged itself from synthetic scenes, annotations or models. The columns are
those of `records.RECORD_SCHEMA`; wider numeric types and extra columns are accepted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from forge.errors import ForgeError
from forge.judge.hashing import image_keys
from forge.perception.records import OPTIONAL_IMAGE_FIELDS, OPTIONAL_OBJECT_FIELDS, RECORD_SCHEMA
from forge.sources.identity import KeySet
from forge.sources.paths import expand

RECORD_POLARS = pl.from_arrow(RECORD_SCHEMA.empty_table()).schema


def _check_schema(schema: pa.Schema, where: str) -> None:
    """One line naming what a table lacks or has of the wrong type, or nothing."""
    problems = []
    for field in RECORD_SCHEMA:
        if field.name not in schema.names:
            if field.name not in OPTIONAL_IMAGE_FIELDS:
                problems.append(f"no column {field.name!r}")
            continue
        have = schema.field(field.name).type
        if field.name == "objects":
            inner = have.value_type if pa.types.is_list(have) or pa.types.is_large_list(have) else None
            if inner is None or not pa.types.is_struct(inner):
                problems.append(f"column 'objects' is {have}, not a list of structs")
                continue
            names = {inner.field(i).name for i in range(inner.num_fields)}
            missing = [f.name for f in field.type.value_type if f.name not in names and f.name not in OPTIONAL_OBJECT_FIELDS]
            if missing:
                problems.append(f"objects lack field(s) {', '.join(missing)}")
        elif pa.types.is_string(field.type) != (pa.types.is_string(have) or pa.types.is_large_string(have)) \
                and not pa.types.is_null(have):
            problems.append(f"column {field.name!r} is {have}, not {field.type}")
    if problems:
        raise ForgeError(f"{where}: not a table of perception records: {'; '.join(problems)} "
                         f"(the columns are listed in the README, section 'Perception from a table')")


def _absent(schema: pa.Schema) -> tuple[str, ...]:
    objects = schema.field("objects").type.value_type
    names = {objects.field(i).name for i in range(objects.num_fields)}
    return (tuple(name for name in OPTIONAL_OBJECT_FIELDS if name not in names)
            + tuple(name for name in OPTIONAL_IMAGE_FIELDS if name not in schema.names))


@dataclass(frozen=True)
class RecordTable:
    """A table of perception records: sorted Parquet files, or one Lance dataset.

    `groups` are the row counts of its Parquet row groups in order (decoding is per row group, so a
    chunk never splits one); empty for Lance, which reads any row range directly.
    """

    paths: tuple[str, ...]
    lance: bool
    rows: int
    groups: tuple[int, ...] = ()
    absent: tuple[str, ...] = ()  # optional object and image fields the table does not have: read as nulls

    @classmethod
    def open(cls, path: str | Path, where: str = "source.path") -> RecordTable:
        path = str(path)
        if path.rstrip("/").endswith(".lance"):
            import lance

            try:
                dataset = lance.dataset(path)
            except (OSError, ValueError) as exc:
                raise ForgeError(f"{where} {path}: cannot open the Lance dataset: {' '.join(str(exc).split())[:200]}") from None
            _check_schema(dataset.schema, f"{where} {path}")
            return cls._nonempty(cls((path,), True, dataset.count_rows(), absent=_absent(dataset.schema)), where, path)
        files = expand(Path(path), {".parquet"})
        if not files:
            raise ForgeError(f"{where} {path}: no Parquet files there (give a .parquet file, a folder or a glob, or a .lance dataset)")
        groups: list[int] = []
        absent: set[str] = set()
        for file in files:
            try:
                meta = pq.read_metadata(file)
                schema = pq.read_schema(file)
            except (OSError, pa.ArrowInvalid) as exc:
                raise ForgeError(f"{where} {file}: not a readable Parquet file: {' '.join(str(exc).split())[:200]}") from None
            _check_schema(schema, f"{where} {file}")
            absent |= set(_absent(schema))
            groups += [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        return cls._nonempty(cls(tuple(files), False, sum(groups), tuple(groups), tuple(sorted(absent))), where, path)

    @staticmethod
    def _nonempty(table: RecordTable, where: str, path: str) -> RecordTable:
        if not table.rows:  # a build of nothing would replace the spec's rows with none
            raise ForgeError(f"{where} {path}: the table holds no records")
        return table

    def limited(self, rows: int) -> RecordTable:
        """The first `rows` rows (--limit)."""
        if rows >= self.rows:
            return self
        groups, left = [], rows
        for size in self.groups:
            if left <= 0:
                break
            groups.append(min(size, left))
            left -= size
        return RecordTable(self.paths, self.lance, rows, tuple(groups), self.absent)

    def chunks(self, chunk_size: int) -> list[tuple[int, int]]:
        """(first row, rows) of each chunk, at most `chunk_size` rows: whole Parquet row groups where
        they are smaller (a row group is decoded whole, so splitting one decodes it again for every
        piece: tables written with row groups of at most the chunk size read fastest)."""
        if self.lance or not self.groups:
            return [(start, min(chunk_size, self.rows - start)) for start in range(0, self.rows, chunk_size)]
        chunks, start, size = [], 0, 0
        for rows in self.groups:
            if size and size + rows > chunk_size:
                chunks.append((start, size))
                start, size = start + size, 0
            while size + rows > chunk_size:  # a row group bigger than a chunk: cut it
                chunks.append((start, chunk_size))
                start, rows = start + chunk_size, rows - chunk_size
            size += rows
        if size:
            chunks.append((start, size))
        return chunks

    def fingerprint(self) -> str:
        """Changes when any file changes: names, sizes, modification times."""
        digest = hashlib.sha256()
        for path in self.paths:
            for item in ([Path(path)] if not self.lance else sorted(Path(path).rglob("*"))):
                stat = item.stat()
                digest.update(f"{item}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:16]

    def read(self, start: int, count: int, columns: list[str] | None = None) -> pl.DataFrame:
        """Rows [start, start + count) as a frame with the record schema's types."""
        columns = columns or list(RECORD_POLARS)
        stored = [name for name in columns if name not in self.absent]
        if self.lance:
            import lance

            frame = pl.from_arrow(lance.dataset(self.paths[0]).to_table(columns=stored, offset=start, limit=count))
        else:
            frame = pl.scan_parquet(list(self.paths)).select(stored).slice(start, count).collect()
        assert isinstance(frame, pl.DataFrame)
        frame = frame.with_columns(pl.lit(None).alias(name) for name in columns if name in self.absent).select(columns)
        objects_absent = [name for name in self.absent if name in OPTIONAL_OBJECT_FIELDS]
        if "objects" in columns and objects_absent:
            frame = frame.with_columns(pl.col("objects").list.eval(pl.element().struct.with_fields(
                *[pl.lit(None).alias(name) for name in objects_absent])))
        return frame.cast({name: RECORD_POLARS[name] for name in columns}, strict=False)

    def duplicates(self, chunk_size: int) -> Iterator[np.ndarray]:
        """Per chunk, the row numbers (in the table) of images seen earlier in the table (same image id).

        Holds one 8-byte key per distinct image across chunks (`KeySet`): the only per-image state a build
        keeps; a repeated row costs nothing that outlives its chunk.
        """
        seen = KeySet()
        for start, count in self.chunks(chunk_size):
            ids = self.read(start, count, ["image_id"])["image_id"]
            rows = np.flatnonzero(ids.is_not_null().to_numpy())  # failed images have no id: never duplicates
            keys = image_keys(ids.gather(rows)).to_numpy() if len(rows) else np.zeros(0, dtype=np.uint64)
            repeat = np.ones(len(rows), dtype=bool)
            repeat[np.unique(keys, return_index=True)[1]] = False  # the first of each id in the chunk
            repeat |= seen.has(keys)
            seen.add(keys)
            yield start + rows[repeat]
