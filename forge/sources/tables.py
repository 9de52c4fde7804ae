"""`source: table`: images listed in one column of a table — Parquet, CSV, JSONL, Lance, or the Arrow
files of a Hugging Face `datasets` folder (`save_to_disk`).

The column holds, per row, a path (relative to the table's folder) or an http(s) URL, or the image
itself: bytes, or a Hugging Face `Image` struct `{bytes, path}`. Images held in the table, and empty
cells (null or ''), are named by a URI that points back at their cell (reading an empty one says so:
every row is accounted for, read or skipped with its reason), `table:///abs/file.parquet?column=image&row=12`, so lineage
(file and row) travels with every QA row and any later step (models, `forge show`, exports) reads
the bytes again from there: a Parquet row group at a time, cached, so reading rows in order decodes
each group once; a Lance row directly; an Arrow file memory-mapped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from forge.errors import ForgeError
from forge.sources.base import Listing
from forge.sources.paths import expand
from forge.sources.uris import scheme_of
from forge.spec.schema import TableSource

SCHEME = "table://"
BATCH_ROWS = 4096  # rows read at a time while listing
KINDS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".lance": "lance", ".arrow": "arrow"}


@lru_cache(maxsize=8)
def _arrow_file(path: str) -> pa.Table:
    """An Arrow IPC stream file (what `datasets.save_to_disk` writes), memory-mapped: rows cost no copy."""
    return pa.ipc.open_stream(pa.memory_map(path)).read_all()


def _columns(path: str, kind: str) -> pa.Schema:
    if kind == "parquet":
        return pq.read_schema(path)
    if kind == "arrow":
        return _arrow_file(path).schema
    if kind == "lance":
        import lance

        return lance.dataset(path).schema
    if kind == "csv":
        import pyarrow.csv as pcsv

        with pcsv.open_csv(path) as reader:  # the schema from the first block, not the whole file
            return reader.schema
    import pyarrow.json as pjson

    with pjson.open_json(path) as reader:
        return reader.schema


def _holds_images(kind: pa.DataType) -> str | None:
    """'text' (paths or URLs), 'bytes' (the image, or an {bytes, path} struct), or None."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "bytes"
    if pa.types.is_struct(kind) and {kind.field(i).name for i in range(kind.num_fields)} >= {"bytes", "path"}:
        return "bytes"
    return None


class TableKind:
    kind = "table"

    def check(self, source: TableSource, base_dir: Path) -> None:
        ImageTable.open(base_dir / source.path, source.image_column, source.metadata)

    def listing(self, source: TableSource, base_dir: Path) -> Listing:
        return ImageTable.open(base_dir / source.path, source.image_column, source.metadata).listing(source.path, source.metadata)


@dataclass(frozen=True)
class ImageTable:
    files: tuple[str, ...]
    kind: str
    column: str

    @classmethod
    def open(cls, path: Path, column: str, metadata: tuple[str, ...] = ()) -> ImageTable:
        """Check the table, its image column and the `metadata` columns to carry; ForgeError (one line,
        naming the key) if unusable."""
        text = str(path)
        files = expand(path, set(KINDS))
        if path.is_dir() and any(f.endswith(".arrow") for f in files):  # a datasets folder: its .json files are metadata
            files = [f for f in files if f.endswith(".arrow")]
        if not files:
            raise ForgeError(f"source.path: {text} matches no table (give a .parquet, .csv, .jsonl or .lance file, a folder "
                             "or a glob, relative to the spec file)")
        return cls.of_files(files, text, column, metadata)

    @classmethod
    def of_files(cls, files: list[str], text: str, column: str, metadata: tuple[str, ...] = ()) -> ImageTable:
        """`files` (what `text` names) checked as one table; ForgeError (one line, naming the key) if unusable."""
        kinds = {KINDS.get(Path(f.rstrip("/")).suffix.lower()) for f in files}
        if None in kinds or len(kinds) != 1:
            raise ForgeError(f"source.path: {text}: tables of one kind only: .parquet, .csv, .jsonl or .lance "
                             f"(found {', '.join(sorted(Path(f).suffix or f for f in files))})")
        kind = kinds.pop()
        for file in files:
            try:
                schema = _columns(file, kind)
            except (OSError, ValueError, pa.ArrowException) as exc:
                raise ForgeError(f"source.path: {file} is not a readable {kind} table: {' '.join(str(exc).split())[:200]}") from None
            if column not in schema.names:
                raise ForgeError(f"source.image_column: {file} has no column {column!r} (its columns: "
                                 f"{', '.join(schema.names[:20])})")
            holds = _holds_images(schema.field(column).type)
            if holds is None or (holds == "bytes" and kind in ("csv", "jsonl")):
                raise ForgeError(f"source.image_column: {column!r} in {file} is {schema.field(column).type}; it must hold "
                                 "paths or URLs (text), or the images (binary, or an {bytes, path} struct)")
            missing = [name for name in metadata if name not in schema.names]
            if missing:
                raise ForgeError(f"source.metadata: {file} has no column {', '.join(map(repr, missing))} (its columns: "
                                 f"{', '.join(schema.names[:20])})")
            binary = [name for name in metadata if _holds_images(schema.field(name).type) == "bytes"]
            if binary:
                raise ForgeError(f"source.metadata: {', '.join(map(repr, binary))} in {file} holds bytes, which a QA "
                                 "row cannot carry as JSON; carry text, numbers or lists")
        return cls(tuple(str(Path(f).resolve()) for f in files), kind, column)

    def listing(self, path: str, metadata: tuple[str, ...]) -> Listing:
        """Every row's image, with its `metadata` columns; ForgeError when the table has no row."""
        total = self.rows()
        if not total:
            raise ForgeError(f"source.path {path!r}: the table lists no images in column {self.column!r}")
        return Listing(total, lambda: self.entries(metadata))

    def rows(self) -> int:
        """Rows over every file (read from metadata where the format has it)."""
        return sum(self._rows(file) for file in self.files)

    def entries(self, metadata: tuple[str, ...] = ()) -> Iterator[tuple[str, dict | None]]:
        """Every row's image as a URI (its path or URL, or its cell, `table://...`, also for an empty
        text cell) with the row's `metadata` columns, in table order, read a batch of rows at a time."""
        for file in self.files:
            text = _holds_images(_columns(file, self.kind).field(self.column).type) == "text"
            folder, row = str(Path(file).parent), 0
            for batch in self._batches(file, ([self.column] if text else []) + list(metadata)):
                values = batch.column(self.column).to_pylist() if text else [None] * batch.num_rows
                carried = batch.select(list(metadata)).to_pylist() if metadata else [None] * batch.num_rows
                for value, meta in zip(values, carried):
                    if not text or not value:
                        yield cell_uri(file, self.column, row), meta
                    else:
                        yield (value if scheme_of(value) else os.path.normpath(os.path.join(folder, value))), meta
                    row += 1

    def _batches(self, file: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """The `columns` of a file, a batch of rows at a time (row counts only when no column is asked for)."""
        if not columns:
            rows = self._rows(file)
            for start in range(0, rows, BATCH_ROWS):
                yield pa.record_batch({"_": pa.nulls(min(BATCH_ROWS, rows - start))})
            return
        if self.kind == "arrow":
            yield from _arrow_file(file).select(columns).to_batches(BATCH_ROWS)
        elif self.kind == "parquet":
            yield from pq.ParquetFile(file).iter_batches(BATCH_ROWS, columns=columns)
        elif self.kind == "lance":
            import lance

            yield from lance.dataset(file).to_batches(columns=columns, batch_size=BATCH_ROWS)
        elif self.kind == "csv":
            import pyarrow.csv as pcsv

            yield from pcsv.open_csv(file, convert_options=pcsv.ConvertOptions(include_columns=columns))
        else:
            import pyarrow.json as pjson

            for batch in pjson.open_json(file):
                yield batch.select(columns)

    def _rows(self, file: str) -> int:
        if self.kind == "arrow":
            return _arrow_file(file).num_rows
        if self.kind == "parquet":
            return pq.ParquetFile(file).metadata.num_rows
        if self.kind == "lance":
            import lance

            return lance.dataset(file).count_rows()
        return sum(batch.num_rows for batch in self._batches(file, [self.column]))


def cell_uri(file: str, column: str, row: int) -> str:
    return f"{SCHEME}{quote(file)}?{urlencode({'column': column, 'row': row})}"


@lru_cache(maxsize=4)
def _row_group(file: str, column: str, group: int) -> pa.Array:
    return pq.ParquetFile(file).read_row_group(group, columns=[column]).column(0).combine_chunks()


@lru_cache(maxsize=64)
def _group_starts(file: str) -> tuple[int, ...]:
    meta = pq.ParquetFile(file).metadata
    starts, total = [], 0
    for i in range(meta.num_row_groups):
        starts.append(total)
        total += meta.row_group(i).num_rows
    return tuple(starts + [total])


def cell_bytes(uri: str) -> bytes:
    """The image bytes a `table://` URI names (OSError when the cell holds none)."""
    parsed = urlparse(uri)
    file = unquote(parsed.netloc + parsed.path)
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    column, row = query["column"], int(query["row"])
    if KINDS.get(Path(file).suffix.lower()) in ("csv", "jsonl"):  # text tables name only their empty cells so
        raise OSError(f"row {row} of {file} holds no image ({column} is empty)")
    if file.rstrip("/").endswith(".lance"):
        import lance

        value = lance.dataset(file).take([row], columns=[column]).column(0)[0].as_py()
    elif file.endswith(".arrow"):
        value = _arrow_file(file).column(column)[row].as_py()
    else:
        starts = _group_starts(file)
        group = max(i for i, start in enumerate(starts[:-1]) if start <= row)
        value = _row_group(file, column, group)[row - starts[group]].as_py()
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            return (Path(file).parent / value["path"]).read_bytes()
        raise OSError(f"row {row} of {file} holds no image ({column} has neither bytes nor path)")
    if not value:
        raise OSError(f"row {row} of {file} holds no image ({column} is empty)")
    return value
