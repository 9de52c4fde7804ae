"""Table exports. `parquet`: one row per sample with the image's bytes, as Hugging Face `datasets`
stores an `Image` feature (a struct of bytes and path, declared in the schema's `huggingface`
metadata), so `datasets.load_dataset("parquet", ...)` and `Dataset.from_parquet` give PIL images.
`jsonl`: the QA rows themselves, one per line, with the exported image's path and size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from forge.export.reading import ReadSample, Unreadable, guarded, ids, json_lines, stated_sizes, turns
from forge.export.samples import ExportOptions, Sample
from forge.export.writing import write_jsonl

PARQUET_FILE, JSONL_FILE = "data.parquet", "rows.jsonl"
_BATCH = 64  # Parquet rows read at once by export-check: memory stays at a few dozen images


def _feature(kind: pa.DataType) -> object:
    """The `datasets` feature of an Arrow type (lists in the list notation every `datasets` version reads)."""
    if pa.types.is_struct(kind):
        return {kind.field(i).name: _feature(kind.field(i).type) for i in range(kind.num_fields)}
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return [_feature(kind.value_type)]
    names = {pa.string(): "string", pa.large_string(): "large_string", pa.int64(): "int64", pa.float64(): "float64",
             pa.bool_(): "bool"}
    return {"dtype": names[kind], "_type": "Value"}


def write_parquet(samples: list[Sample], out: Path, options: ExportOptions) -> list[Path]:
    records = []
    for sample in samples:
        messages = []
        for row in sample.rows:
            messages += [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": row["answer"]}]
        records.append({"image": {"bytes": sample.image.file.read_bytes(), "path": Path(sample.image.path).name},
                        "messages": messages, **sample.meta()})
    table = pa.Table.from_pylist(records)
    features = {name: ({"_type": "Image"} if name == "image" else _feature(table.schema.field(name).type))
                for name in table.column_names}
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(table, out / PARQUET_FILE)
    return [out / PARQUET_FILE]


def write_rows(samples: list[Sample], out: Path, options: ExportOptions) -> list[Path]:
    rows = [{**row, "image": s.image.path, "width": s.image.width, "height": s.image.height}
            for s in samples for row in s.rows]
    return [write_jsonl(out / JSONL_FILE, rows)]


def _parquet_sample(record: dict, name: str) -> ReadSample:
    data = record["image"]["bytes"]
    if not isinstance(data, bytes):
        raise TypeError("the image struct holds no bytes")
    answers = turns(record["messages"], "role", "content", "user", "assistant")
    return ReadSample(PARQUET_FILE, name, ids(record["qa_id"]), answers, data, stated_sizes(record))


def read_parquet(folder: Path, root: Path) -> Iterator[ReadSample]:
    """Each row as `datasets` gives it: the `Image` feature's bytes (declared in the schema metadata) and the
    messages; read a few rows at a time."""
    try:
        file = pq.ParquetFile(folder / PARQUET_FILE)
        features = json.loads(file.schema_arrow.metadata[b"huggingface"])["info"]["features"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Unreadable(f"{PARQUET_FILE}: not a Parquet file with datasets features ({type(exc).__name__}: {exc}); "
                         "export again") from None
    if features.get("image") != {"_type": "Image"}:
        yield ReadSample(PARQUET_FILE, "", problem="declares no Image feature for `image`: datasets gives no pictures")
    number = 0
    try:
        for batch in file.iter_batches(batch_size=_BATCH):
            for record in batch.to_pylist():
                number += 1
                yield guarded(PARQUET_FILE, f"row {number}", lambda: _parquet_sample(record, f"row {number}"))
    except (OSError, ValueError) as exc:
        raise Unreadable(f"{PARQUET_FILE}: unreadable after row {number} ({exc}); export again") from None


def read_rows(folder: Path, root: Path) -> Iterator[ReadSample]:
    """Each QA row with its image path and size."""
    for name, line in json_lines(folder, JSONL_FILE):
        def parse() -> ReadSample:
            row = json.loads(line)
            return ReadSample(JSONL_FILE, name, ids(row["qa_id"]), [row["answer"]], root / row["image"], stated_sizes(row))

        yield guarded(JSONL_FILE, name, parse)
