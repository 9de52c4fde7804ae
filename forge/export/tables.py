"""Table exports. `parquet`: one row per sample with the image's bytes, as Hugging Face `datasets`
stores an `Image` feature (a struct of bytes and path, declared in the schema's `huggingface`
metadata), so `datasets.load_dataset("parquet", ...)` and `Dataset.from_parquet` give PIL images.
`jsonl`: the QA rows themselves, one per line, with the exported image's path and size."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from forge.export.samples import ExportOptions, Sample
from forge.export.writing import write_jsonl

PARQUET_FILE, JSONL_FILE = "data.parquet", "rows.jsonl"


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
