"""`source: table`: images listed in one column of a table — Parquet, CSV, JSONL, Lance, or the Arrow
files of a Hugging Face `datasets` folder (`save_to_disk`).

The column holds, per row, a path (relative to the table's folder) or an http(s) URL, or the image
itself: bytes, or a Hugging Face `Image` struct `{bytes, path}`. Images held in the table are named
by a URI that points back at their cell, `table:///abs/file.parquet?column=image&row=12`, so lineage
(file and row) travels with every QA row and any later step (models, `forge show`, exports) reads
the bytes again from there: a Parquet row group at a time, cached, so reading rows in order decodes
each group once; a Lance row directly; an Arrow file memory-mapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from forge.errors import ForgeError
from forge.perception.paths import expand

SCHEME = "table://"
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
    return _text_table(path, kind).schema


def _text_table(path: str, kind: str) -> pa.Table:
    if kind == "csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path)
    import pyarrow.json as pjson

    return pjson.read_json(path)


def _holds_images(kind: pa.DataType) -> str | None:
    """'text' (paths or URLs), 'bytes' (the image, or an {bytes, path} struct), or None."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "bytes"
    if pa.types.is_struct(kind) and {kind.field(i).name for i in range(kind.num_fields)} >= {"bytes", "path"}:
        return "bytes"
    return None


@dataclass(frozen=True)
class ImageTable:
    files: tuple[str, ...]
    kind: str
    column: str

    @classmethod
    def open(cls, path: Path, column: str) -> ImageTable:
        """Check the table and its image column; ForgeError (one line, naming the key) if unusable."""
        text = str(path)
        files = expand(path, set(KINDS))
        if path.is_dir() and any(f.endswith(".arrow") for f in files):  # a datasets folder: its .json files are metadata
            files = [f for f in files if f.endswith(".arrow")]
        if not files:
            raise ForgeError(f"source.path: {text} matches no table (give a .parquet, .csv, .jsonl or .lance file, a folder "
                             "or a glob, relative to the spec file)")
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
        return cls(tuple(str(Path(f).resolve()) for f in files), kind, column)

    def uris(self) -> list[str]:
        """Every row's image as a URI: its path or URL, or its cell (`table://...`), in table order."""
        out: list[str] = []
        for file in self.files:
            schema = _columns(file, self.kind)
            if _holds_images(schema.field(self.column).type) == "text":
                values = self._read_column(file)
                folder = Path(file).parent
                out += [v if v.startswith(("http://", "https://")) else str((folder / v).resolve())
                        for v in values if v]
            else:
                out += [cell_uri(file, self.column, row) for row in range(self._rows(file))]
        return out

    def _read_column(self, file: str) -> list[str]:
        if self.kind == "arrow":
            return _arrow_file(file).column(self.column).to_pylist()
        if self.kind == "parquet":
            return pq.read_table(file, columns=[self.column]).column(0).to_pylist()
        if self.kind == "lance":
            import lance

            return lance.dataset(file).to_table(columns=[self.column]).column(0).to_pylist()
        return _text_table(file, self.kind).column(self.column).to_pylist()

    def _rows(self, file: str) -> int:
        if self.kind == "arrow":
            return _arrow_file(file).num_rows
        if self.kind == "parquet":
            return pq.ParquetFile(file).metadata.num_rows
        import lance

        return lance.dataset(file).count_rows()


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
