"""Exports: a folder a trainer can use as it is — its annotation file(s), `images/` (every referenced
image once, as the trainer will open it), `export.json` (what was written) and `forge_index.jsonl`
(one line per QA row: lineage, image, size, objects; what `forge export-check` verifies).

One module per format, each matching its consumer's loading code (cited in the module): it writes the
format and reads it back as that consumer does (for `forge export-check`): `llava`, `sharegpt`
(LLaMA-Factory, with `dataset_info.json`), `openai`, `qwen` (Qwen-VL), `qwen2.5`, `webdataset`,
`parquet` (Hugging Face `datasets`), `jsonl`. An export is written beside the folder it replaces and
swapped in whole (`writing.replacing`): a reader or a killed run never sees half of one.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import polars as pl
import pyarrow as pa

from forge.errors import ForgeError
from forge.export import llava, openai, qwen, sharegpt, tables, webdataset
from forge.export.images import ImageWriter
from forge.export.reading import ReadSample
from forge.export.samples import ExportOptions, Sample, make_samples, picture_size, stored_answer
from forge.export.writing import replacing, write_json, write_jsonl

MANIFEST, INDEX = "export.json", "forge_index.jsonl"
MAX_TURNS = 32


@dataclass(frozen=True)
class Format:
    write: Callable[[list[Sample], Path, ExportOptions], list[Path]]
    read: Callable[[Path, Path], Iterator[ReadSample]]  # (export folder, image root): the samples as the trainer reads them
    # a row's answer as the format writes it, for a picture of (width, height) as the trainer opens it
    answer: Callable[[dict, int, int, ExportOptions], str] = stored_answer
    # what a sample states of such a picture (its width and height, and any size derived from them)
    sizes: Callable[[int, int, ExportOptions], dict[str, int]] = picture_size
    embeds_images: bool = False  # the image bytes go inside the files: no images/ folder
    multi_turn: bool = True  # can hold several questions about one image in one sample


FORMATS: dict[str, Format] = {
    "llava": Format(llava.write, llava.read),
    "sharegpt": Format(sharegpt.write, sharegpt.read),
    "openai": Format(openai.write, openai.read),
    "qwen": Format(qwen.write_qwen, qwen.read_qwen, answer=qwen.answer_qwen),
    "qwen2.5": Format(qwen.write_qwen25, qwen.read_qwen25, answer=qwen.answer_qwen25, sizes=qwen.sizes_qwen25),
    "webdataset": Format(webdataset.write, webdataset.read, embeds_images=True, multi_turn=False),
    "parquet": Format(tables.write_parquet, tables.read_parquet, embeds_images=True),
    "jsonl": Format(tables.write_rows, tables.read_rows, multi_turn=False),
}
# the columns of a QA row an export reads
NEEDS = ("qa_id", "image_id", "image_uri", "family", "question", "answer", "answer_type", "objects")


@dataclass
class ExportResult:
    folder: Path
    files: list[Path]
    rows: int
    samples: int
    images: int


def _with_split(table: pa.Table) -> list[dict]:
    """Rows as dicts with `split` (a query result has none: the default split by image)."""
    if "split" in table.column_names:
        return table.to_pylist()
    from forge.sample import DEFAULT_SPLITS, split_expr

    return pl.from_arrow(table).with_columns(split=split_expr(DEFAULT_SPLITS)).to_dicts()


def check_out(out: Path) -> None:
    """Refuse an `--out` that an export must not replace: a file, or a folder of other things than an export."""
    if out.exists() and not out.is_dir():
        raise ForgeError(f"--out {out}: is a file; an export is a folder (annotation files plus images/)")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ForgeError(f"--out {out}: holds files but no {MANIFEST}, so it is not a forge export, and an export "
                         "replaces its folder whole; give a new or empty folder")


def export(table: pa.Table, fmt: str, out: Path, images: str = "copy", image_root: Path | None = None,
           turns: int = 1, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Write `table`'s QA rows as an export folder `out` in `fmt`."""
    if fmt not in FORMATS:
        raise ForgeError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    missing = [c for c in NEEDS if c not in table.column_names]
    if missing:
        raise ForgeError(f"--format {fmt} needs the QA columns {', '.join(missing)}: select them, e.g. SELECT * FROM qa WHERE ...")
    if not 1 <= turns <= MAX_TURNS:
        raise ForgeError(f"--turns {turns}: between 1 and {MAX_TURNS}")
    if turns > 1 and not FORMATS[fmt].multi_turn:
        raise ForgeError(f"--turns {turns}: --format {fmt} holds every question of an image already; leave --turns out")
    check_out(out)
    rows = _with_split(table)
    try:
        with replacing(out) as staging:
            return _write(rows, fmt, out, staging, images, image_root, turns, options)
    except OSError as exc:  # a full disk, a read-only folder: the old export stays as it was
        raise ForgeError(f"--out {out}: cannot write the export ({exc}); the folder holds what it held before") from None


def _write(rows: list[dict], fmt: str, out: Path, staging: Path, images: str, image_root: Path | None, turns: int,
           options: ExportOptions) -> ExportResult:
    """The export of `rows`, written into `staging` as it will be at `out`."""
    spec = FORMATS[fmt]
    embedded = staging / ".embedded"  # images only read into the files: not part of the export
    writer = ImageWriter(embedded, "copy") if spec.embeds_images else ImageWriter(out, images, image_root, staging)
    samples = make_samples(rows, writer, turns)
    files = [out / f.name for f in spec.write(samples, staging, options)]
    if spec.embeds_images:
        shutil.rmtree(embedded)
    write_jsonl(staging / INDEX, [
        {"qa_id": row["qa_id"], "family": row["family"], "split": row["split"], "image_id": row["image_id"],
         "image": None if spec.embeds_images else s.image.path, "width": s.image.width, "height": s.image.height,
         "answer_type": row["answer_type"], "answer": row["answer"], "objects": row["objects"]}
        for s in samples for row in s.rows])
    root = str(image_root.resolve()) if image_root is not None and not spec.embeds_images else None  # else: the folder
    write_json(staging / MANIFEST, {"format": fmt, "images": None if spec.embeds_images else images, "image_root": root,
                                    "turns": turns, "options": asdict(options), "rows": len(rows), "samples": len(samples),
                                    "image_count": len(writer.done), "files": [f.name for f in files]})
    return ExportResult(out, files, len(rows), len(samples), len(writer.done))
