"""Open Images box annotations (`ImageID, LabelName, XMin, XMax, YMin, YMax, IsOccluded, IsTruncated,
IsGroupOf, IsDepiction, IsInside`, one row per box), read streaming into Parquet parts.

The box CSV is read a block of rows at a time with Arrow's CSV reader and checked column-wise; rows become
`annotations.parquet` rows (boxes already fractions of the image; `IsGroupOf` a crowd, `IsDepiction` a
depiction, `IsTruncated` truncated). Images are the distinct `ImageID`s (`<ImageID>.jpg` in the images
folder), found afterwards over the Parquet part (`annotated.py`), so no set of ids is ever held. Label
names come from the class-description CSV (`LabelName, DisplayName`, with or without its header row).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from forge.sources.coco import ANNOTATIONS_SCHEMA
from forge.progress import Progress
from forge.sources.problems import Problems

COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsTruncated", "IsGroupOf", "IsDepiction")
BLOCK = 2 << 20  # bytes per CSV block: Arrow reads about 37 blocks ahead, so this bounds memory (~75 MB)
EDGE = 1e-6  # a fraction this far outside [0, 1] is rounding, not a box outside its image


def read_classes(path: Path, problems: Problems) -> dict[str, str]:
    """LabelName (`/m/...`) -> DisplayName."""
    out: dict[str, str] = {}
    try:
        with path.open(encoding="utf-8", newline="") as file:
            for row, fields in enumerate(csv.reader(file)):
                if row == 0 and fields[:2] == ["LabelName", "DisplayName"]:
                    continue
                if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
                    problems.add(f"row {row + 1}", f"{fields!r}: expected LabelName,DisplayName")
                    continue
                out[fields[0].strip()] = fields[1].strip()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.fail(f"{path}: cannot read the class descriptions: {' '.join(str(exc).split())[:200]}")
    return out


def read_openimages(path: Path, folder: Path, problems: Problems, bar: Progress) -> None:
    """Stream an Open Images box CSV into `folder`/annotations.parquet (positions are 1-based data rows);
    `bar` counts bytes read (approximately: Arrow reads blocks ahead)."""
    writer: pq.ParquetWriter | None = None
    position = 0
    try:
        reader = pcsv.open_csv(pa.OSFile(str(path)), read_options=pcsv.ReadOptions(block_size=BLOCK),
                               convert_options=pcsv.ConvertOptions(column_types={"ImageID": pa.string(),
                                                                                  "LabelName": pa.string()}))
        missing = [name for name in COLUMNS if name not in reader.schema.names]
        if missing:
            problems.fail(f"{path}: no column {', '.join(missing)} (an Open Images box CSV has {', '.join(COLUMNS)})")
        for batch in reader:
            table = _rows(pa.Table.from_batches([batch]), position, problems)
            position += batch.num_rows
            writer = writer or pq.ParquetWriter(folder / "annotations.parquet", ANNOTATIONS_SCHEMA)
            writer.write_table(table)
            bar.update(batch.get_total_buffer_size())
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        problems.fail(f"{path}: cannot read the Open Images box CSV: {' '.join(str(exc).split())[:200]} (is it cut short "
                      "or not UTF-8?)")
    if writer is None:
        pq.write_table(ANNOTATIONS_SCHEMA.empty_table(), folder / "annotations.parquet")
    else:
        writer.close()


def _rows(table: pa.Table, start: int, problems: Problems) -> pa.Table:
    """A block of CSV rows checked and turned into annotation rows (bad rows are problems, left out)."""
    boxes = {name: pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False) for name in ("XMin", "XMax", "YMin", "YMax")}
    x1, x2, y1, y2 = boxes["XMin"], boxes["XMax"], boxes["YMin"], boxes["YMax"]
    good = (np.isfinite(x1) & np.isfinite(x2) & np.isfinite(y1) & np.isfinite(y2) & (x1 >= -EDGE) & (y1 >= -EDGE)
            & (x2 <= 1 + EDGE) & (y2 <= 1 + EDGE) & (x2 > x1) & (y2 > y1))
    ids = table["ImageID"].to_pylist()
    good &= np.array([bool(i) for i in ids], dtype=bool)
    for row in np.flatnonzero(~good)[:5]:
        problems.add(f"row {start + row + 1}", f"box XMin={x1[row]}, XMax={x2[row]}, YMin={y1[row]}, YMax={y2[row]} of "
                                               f"image {ids[row]!r} is not inside its image (fractions, min < max)")
    problems.count += max(int((~good).sum()) - 5, 0)

    def flag(name: str) -> pa.Array:  # 1 yes, 0 no, -1 unknown
        return pc.fill_null(pc.equal(pc.cast(table[name], pa.int64()), 1), False)

    positions = np.arange(start + 1, start + table.num_rows + 1)
    out = pa.table({
        "position": pa.array(positions), "annotation_id": pa.array([f"row {p}" for p in positions]),
        "image_key": pc.binary_join_element_wise('"', table["ImageID"], '"', ""), "category": table["LabelName"],
        "x": pa.array(x1), "y": pa.array(y1), "w": pa.array(x2 - x1), "h": pa.array(y2 - y1),
        "score": pa.array(np.ones(table.num_rows)), "crowd": flag("IsGroupOf"), "depiction": flag("IsDepiction"),
        "truncated": flag("IsTruncated"), "segmentation": pa.nulls(table.num_rows, pa.string()),
        **{name: pa.nulls(table.num_rows, pa.int64()) for name in ("mask_height", "mask_width", "mask_pixels")}}, schema=ANNOTATIONS_SCHEMA)
    return out.filter(pa.array(good))
