"""`source: annotations`: the images of an annotated dataset (COCO, LVIS, Objects365 as COCO JSON; Open
Images as box CSVs) with their human-drawn objects, staged once into a per-image Parquet table.

The annotation file is read once, streaming (`coco.py`, `openimages.py`), into Parquet parts; DuckDB, with
a memory limit and spilling to disk, checks their cross-references and sorts images and boxes, and the
sorted boxes are gathered a row group of images at a time into `objects.parquet`: one row per image, sorted by the dataset's image id, with its objects (label, score,
box as fractions, crowd / group-of, depiction, truncated, segmentation, annotation id) and the labels
whose annotation is not exhaustive (LVIS). So memory never follows the number of images or boxes, and a
build reads the table a window at a time like any other source. The table is cached in the database by
the files' identity and the label rules, so a rebuild reads nothing again.

Labels are normalized as datasets ship them ("Person" -> "person", LVIS "bus_(vehicle)" -> "bus",
Objects365 "Cabinet/shelf" -> "cabinet", Open Images "/m/01g317" -> its display name, lowercased; two
categories that would share a name keep their full names), then mapped (`source.labels`: a YAML file
`{name: new name}` renames or merges, `{name: null}` drops) and filtered (`source.exclude`: a list shipped
for the dataset, a file, or names: labels that are not objects in space, such as "human face").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from forge.errors import ForgeError
from forge.progress import Progress, ProgressFactory, no_progress
from forge.sources.base import Entry, Listing
from forge.sources.coco import read_coco
from forge.sources.coco_masks import MaskShape, check_fits
from forge.sources.openimages import read_classes, read_openimages
from forge.sources.problems import MAX_PROBLEMS, Problems
from forge.spec.schema import AnnotationsSource

STAGED = ".forge-annotations"  # in the database folder: one staged table per annotation file and label rules
FORMAT = 2  # bump when what is staged changes
MEMORY_LIMIT = "1GB"  # DuckDB's, while grouping boxes by image; the rest spills to disk
ROW_GROUP = 10_000  # images per row group of objects.parquet
SUMMARY = "summary.json"  # beside objects.parquet: images, boxes kept, exact duplicates, boxes of dropped labels
EXCLUDED = Path(__file__).resolve().parent.parent / "vocabularies" / "exclude"  # <dataset>.txt, shipped
OBJECT_TYPE = pa.struct([("annotation_id", pa.string()), ("label", pa.string()), ("score", pa.float64()),
                         ("x1", pa.float64()), ("y1", pa.float64()), ("x2", pa.float64()), ("y2", pa.float64()),
                         ("crowd", pa.bool_()), ("depiction", pa.bool_()), ("truncated", pa.bool_()),
                         ("segmentation", pa.string()), ("position", pa.int64())])
TABLE_SCHEMA = pa.schema([("image_key", pa.string()), ("file_name", pa.string()), ("width", pa.int64()),
                          ("height", pa.int64()), ("extras", pa.string()), ("not_exhaustive", pa.list_(pa.string())),
                          ("objects", pa.list_(OBJECT_TYPE)), ("unique_stem", pa.bool_())])
SORTED_BOXES = pa.schema([("image", pa.int64()), ("category", pa.string()), ("x", pa.float64()), ("y", pa.float64()),
                          ("w", pa.float64()), ("h", pa.float64()), ("label", pa.string()),
                          *[OBJECT_TYPE.field(name) for name in OBJECT_TYPE.names if name != "label"]])
CheckImage = Callable[[dict, int, int, str], list[tuple[str, str]]]


def spelled(name: str) -> str:
    """A category name in full, as text: underscores as spaces, one space between words, lowercase."""
    return " ".join(name.replace("_", " ").split()).lower()


def normalized(name: str) -> str:
    """A category name as questions use it: LVIS's disambiguation dropped ("bus_(vehicle)" -> "bus"),
    Objects365's alternatives reduced to the first ("Cabinet/shelf" -> "cabinet"), `spelled`
    ("Person" -> "person")."""
    name = re.sub(r"_?\([^()]*\)\s*$", "", name.strip())
    return spelled(name.split("/")[0] if "/" in name.strip("/") else name)


def names_of(raw: dict[str, str]) -> dict[str, str]:
    """Category -> the name questions use: `normalized`, unless two different categories would share it
    (LVIS "bat_(animal)" beside "bat_(baseball)"): then each keeps its full name ("bat (animal)")."""
    spellings: dict[str, set[str]] = {}
    for name in raw.values():
        spellings.setdefault(normalized(name), set()).add(spelled(name))
    return {key: normalized(name) if len(spellings[normalized(name)]) == 1 else spelled(name)
            for key, name in raw.items()}


@dataclass(frozen=True)
class AnnotatedImages:
    """A staged annotation table: `rows` images in `path`, their files under `images_dir`."""

    path: Path
    rows: int
    fingerprint: str
    images_dir: Path
    summary: dict  # `SUMMARY`: what staging kept and dropped

    def line(self) -> str:
        """The staged table in one line, for the build's output."""
        s = self.summary
        return (f"annotations: {s['images']:,} images, {s['boxes']:,} boxes ({s['duplicates']:,} exact duplicates and "
                f"{s['dropped_labels']:,} boxes of dropped or excluded labels left out)")

    def read(self, start: int, stop: int) -> pa.Table:
        """Images [start, stop) with their objects, decoding only the row groups they lie in."""
        file = pq.ParquetFile(self.path)
        tables, first = [], 0
        for group in range(file.metadata.num_row_groups):
            rows = file.metadata.row_group(group).num_rows
            if first < stop and first + rows > start:
                table = file.read_row_group(group)
                tables.append(table.slice(max(start - first, 0), min(stop, first + rows) - max(start, first)))
            first += rows
        return (pa.concat_tables(tables) if tables else TABLE_SCHEMA.empty_table()).cast(TABLE_SCHEMA)

    def find(self, file_name: str) -> dict | None:
        """The row of the image `file_name` (relative to the images folder), or None."""
        rows = pq.read_table(self.path, filters=[("file_name", "=", file_name)]).cast(TABLE_SCHEMA).to_pylist()
        return rows[0] if rows else None

    def uri(self, file_name: str) -> str:
        return str(self.images_dir / file_name)

    def listing(self) -> Listing:
        """The images, in table order, for model perception."""
        def entries() -> Iterator[Entry]:
            for batch in pq.ParquetFile(self.path).iter_batches(columns=["file_name"]):
                for name in batch.column(0).to_pylist():
                    yield self.uri(name), None
        return Listing(self.rows, entries)


def files_of(source: AnnotationsSource, base_dir: Path) -> list[Path]:
    """The annotation files a source reads."""
    names = [source.instances] if source.instances is not None else [source.boxes, source.classes]
    return [base_dir / name for name in names if name is not None]


def stage(source: AnnotationsSource, base_dir: Path, db: Path, check_image: CheckImage,
          progress: ProgressFactory = no_progress) -> AnnotatedImages:
    """The source's staged table, made once per annotation file and label rules (`STAGED` in `db`);
    SpecError listing the file's problems, one line each, when it has any."""
    images_dir = (base_dir / source.images).resolve()
    rules = label_rules(source, base_dir)
    fingerprint = _fingerprint(source, base_dir, rules)
    folder = db / STAGED / fingerprint
    table = folder / "objects.parquet"
    if not table.exists():
        # staged beside the database, moved in when whole: a file with problems leaves nothing behind
        work = db.parent / f".{db.name}.forge-annotations.{fingerprint}.{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            path = files_of(source, base_dir)[0]
            with progress(f"reading annotations {path.name}", path.stat().st_size, "bytes") as bar:
                _stage_into(source, base_dir, work, rules, check_image, bar)
            folder.parent.mkdir(parents=True, exist_ok=True)
            if not folder.exists():  # else another build staged it meanwhile: the same content
                work.rename(folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    rows = pq.ParquetFile(table).metadata.num_rows
    if not rows:
        raise ForgeError(f"{files_of(source, base_dir)[0]}: lists no images; add entries to `images`")
    return AnnotatedImages(table, rows, fingerprint, images_dir, json.loads((folder / SUMMARY).read_text()))


def dataset_labels(source: AnnotationsSource, base_dir: Path) -> set[str]:
    """The dataset's labels as questions would use them (`names_of`), and in full (for `forge validate`'s
    check of a label map); reads only the categories or the class descriptions."""
    problems = Problems(files_of(source, base_dir)[0])
    if source.instances is not None:
        import ijson

        raw = {}
        try:
            with (base_dir / source.instances).open("rb") as file:
                for number, category in enumerate(ijson.items(file, "categories.item")):
                    if isinstance(category, dict) and isinstance(category.get("name"), str):
                        raw[str(number)] = category["name"]
        except (OSError, ijson.JSONError, UnicodeDecodeError):
            return set()  # the build says what is wrong with the file itself
    else:
        raw = read_classes(base_dir / source.classes, problems)
    return set(names_of(raw).values()) | {spelled(name) for name in raw.values()}


def label_rules(source: AnnotationsSource, base_dir: Path) -> dict:
    """`{"map": {name: new name or None}, "exclude": [names]}`, `spelled` (a map or list names a category as
    questions would, or in full); ForgeError naming the bad key."""
    mapping: dict[str, str | None] = {}
    if source.labels is not None:
        path = base_dir / source.labels
        from forge.yaml_files import read_yaml_text

        data = yaml.safe_load(read_yaml_text(path, "label map")) or {}
        if not isinstance(data, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str) and v.strip())
                                                 for k, v in data.items()):
            raise ForgeError(f"source.labels: {path} must map dataset label names to new names (or to null, to drop "
                             "them), e.g. {Man: person, Woman: person, Human face: null}")
        mapping = {spelled(k): (spelled(v) if v is not None else None) for k, v in data.items()}
    excluded: list[str] = []
    if source.exclude is not None:
        if isinstance(source.exclude, list):
            excluded = list(source.exclude)
        else:
            shipped = EXCLUDED / f"{source.exclude}.txt"
            path = shipped if shipped.is_file() else base_dir / source.exclude
            if not path.is_file():
                known = ", ".join(sorted(p.stem for p in EXCLUDED.glob("*.txt")))
                raise ForgeError(f"source.exclude: {source.exclude!r} is neither a shipped list ({known}) nor a file "
                                 f"({path} not found)")
            excluded = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                        if line.strip() and not line.lstrip().startswith("#")]
    return {"map": mapping, "exclude": sorted({spelled(name) for name in excluded})}


def check_label_map(source: AnnotationsSource, base_dir: Path) -> str | None:
    """What is wrong with the label map of `source` (names the dataset does not have), or None; reads
    the dataset's categories (`forge validate`)."""
    rules = label_rules(source, base_dir)
    return _unknown(rules, dataset_labels(source, base_dir), base_dir / source.labels if source.labels else None)


def _unknown(rules: dict, labels: set[str], path: Path | None) -> str | None:
    unknown = sorted(name for name in rules["map"] if labels and name not in labels)
    if not unknown:
        return None
    return (f"{path} names labels the dataset does not have: {', '.join(map(repr, unknown[:10]))}"
            f"{' and more' if len(unknown) > 10 else ''} (compared lowercased, as questions spell them or in full; "
            "fix or remove them)")


def fingerprint(source: AnnotationsSource, base_dir: Path) -> str:
    """The identity of a source's annotation files and label rules: its staged table's name, and what model
    cache keys name as where the objects came from."""
    return _fingerprint(source, base_dir, label_rules(source, base_dir))


def _fingerprint(source: AnnotationsSource, base_dir: Path, rules: dict) -> str:
    parts = {"format": FORMAT, "rules": rules, "source": source.model_dump(include={"instances", "boxes", "classes"}),
             "files": [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files_of(source, base_dir)]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def labels_of(raw: dict[str, str], rules: dict) -> dict[str, str | None]:
    """Category -> its label after the spec's label map and exclusions (None: dropped). A map or exclusion
    may name a category as questions would (`names_of`) or in full."""
    out: dict[str, str | None] = {}
    for key, name in names_of(raw).items():
        full = spelled(raw[key])
        for form in (name, full):
            if form in rules["map"]:
                name = rules["map"][form]
                break
        out[key] = None if name is None or name in rules["exclude"] or full in rules["exclude"] else name
    return out


def _stage_into(source: AnnotationsSource, base_dir: Path, work: Path, rules: dict, check_image: CheckImage,
                bar: Progress) -> None:
    """Read the annotation file into `work` and group its boxes by image into `work`/objects.parquet."""
    path = files_of(source, base_dir)[0]
    problems = Problems(path)
    if source.instances is not None:
        categories = {str(k): v for k, v in read_coco(path, work, problems, check_image, bar).items()}
    else:
        classes = read_classes(base_dir / source.classes, Problems(base_dir / source.classes))
        read_openimages(path, work, problems, bar)
        categories = classes
    unknown = _unknown(rules, set(names_of(categories).values()) | {spelled(n) for n in categories.values()},
                       base_dir / source.labels if source.labels else None)
    if unknown is not None:
        problems.add("source.labels", unknown)
    labels = pa.table({"category": list(categories), "raw": list(categories.values()),
                       "label": list(labels_of(categories, rules).values())},
                      schema=pa.schema([("category", pa.string()), ("raw", pa.string()), ("label", pa.string())]))
    spill = work / "spill"
    spill.mkdir()
    with duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "threads": 2, "temp_directory": str(spill),
                                "preserve_insertion_order": False}) as db:
        db.register("labels", labels)
        db.execute(f"CREATE VIEW annotations AS SELECT * FROM read_parquet('{_sql(work / 'annotations.parquet')}')")
        if source.instances is not None:
            db.execute(f"CREATE VIEW images AS SELECT * FROM read_parquet('{_sql(work / 'images.parquet')}')")
        else:  # Open Images: the images are the distinct ImageIDs, <ImageID>.jpg
            db.execute("CREATE TEMP TABLE images AS SELECT min(position) AS position, image_key, "
                       "trim(image_key, '\"') || '.jpg' AS file_name, NULL::BIGINT AS width, NULL::BIGINT AS height, "
                       "NULL::VARCHAR AS extras, []::BIGINT[] AS not_exhaustive "
                       "FROM annotations GROUP BY image_key")
        _cross_checks(db, source, problems)
        problems.raise_any()
        total = db.execute("SELECT count(*) FROM annotations").fetchone()[0]
        _sorted_parts(db, work)
    counts = _group_by_image(work)
    (work / SUMMARY).write_text(json.dumps({"images": counts["images"], "boxes": counts["kept"],
                                            "duplicates": total - counts["kept"] - counts["dropped"],
                                            "dropped_labels": counts["dropped"]}))
    for name in ("images.parquet", "annotations.parquet", "images_sorted.parquet", "boxes_sorted.parquet", "spill"):
        target = work / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def _sorted_parts(db: duckdb.DuckDBPyConnection, work: Path) -> None:
    """The images in the dataset's order, and every box beside its image's position, sorted so that a box
    annotated twice (same image, category and box) lies next to its twin: two external sorts, which
    spill to disk, where one grouping of 25M boxes into lists would not fit in DuckDB's memory limit."""
    db.execute(f"""
        COPY (
          WITH partial AS (  -- per image, the labels whose boxes are not exhaustive (LVIS)
            SELECT i.image_key, list(DISTINCT l.label ORDER BY l.label) AS labels
            FROM images i, unnest(i.not_exhaustive) AS u(category) JOIN labels l ON l.category = u.category::VARCHAR
            WHERE l.label IS NOT NULL GROUP BY i.image_key)
          SELECT i.position, i.image_key, i.file_name, i.width, i.height, i.extras,
                 coalesce(p.labels, []) AS not_exhaustive,
                 count(*) OVER (PARTITION BY regexp_replace(regexp_replace(i.file_name, '^.*/', ''),
                                                            '[.][^.]*$', '')) = 1 AS unique_stem
          FROM images i LEFT JOIN partial p ON p.image_key = i.image_key
          ORDER BY i.position
        ) TO '{_sql(work / "images_sorted.parquet")}' (FORMAT parquet)""")
    db.execute(f"""
        COPY (
          SELECT i.position AS image, a.category, a.x, a.y, a.w, a.h, l.label, a.annotation_id, a.score,
                 greatest(a.x / coalesce(i.width, 1), 0) AS x1, greatest(a.y / coalesce(i.height, 1), 0) AS y1,
                 least((a.x + a.w) / coalesce(i.width, 1), 1) AS x2, least((a.y + a.h) / coalesce(i.height, 1), 1) AS y2,
                 a.crowd, a.depiction, a.truncated, a.segmentation, a.position
          FROM annotations a JOIN images i ON i.image_key = a.image_key LEFT JOIN labels l ON l.category = a.category
          ORDER BY i.position, a.category, a.x, a.y, a.w, a.h, a.position
        ) TO '{_sql(work / "boxes_sorted.parquet")}' (FORMAT parquet)""")


def _group_by_image(work: Path) -> dict[str, int]:
    """objects.parquet: the sorted images a row group at a time, each with its boxes (read alongside, as
    far as the row group's last image) as a list in annotation order; exact duplicates after the first
    and boxes of dropped labels left out. Memory: one row group and its boxes."""
    boxes = _Boxes(work / "boxes_sorted.parquet")
    counts = {"images": 0, "kept": 0, "dropped": 0}
    with pq.ParquetWriter(work / "objects.parquet", TABLE_SCHEMA) as writer:
        for images in pq.ParquetFile(work / "images_sorted.parquet").iter_batches(batch_size=ROW_GROUP):
            positions = images.column("position").to_numpy()
            taken = boxes.through(int(positions[-1]))
            twin = np.zeros(taken.num_rows, bool)
            if taken.num_rows > 1:
                twin[1:] = np.logical_and.reduce([
                    pc.equal(taken.column(key).slice(1), taken.column(key).slice(0, taken.num_rows - 1))
                    .fill_null(False).to_numpy(zero_copy_only=False) for key in ("image", "category", "x", "y", "w", "h")])
            labelled = pc.invert(pc.is_null(taken.column("label"))).to_numpy(zero_copy_only=False)
            kept = taken.filter(pa.array(~twin & labelled))
            counts["dropped"] += int((~twin & ~labelled).sum())
            kept = kept.take(np.lexsort((kept.column("position").to_numpy(), kept.column("image").to_numpy())))
            offsets = np.append(np.searchsorted(kept.column("image").to_numpy(), positions), kept.num_rows)
            objects = pa.StructArray.from_arrays([kept.column(name).combine_chunks().cast(OBJECT_TYPE.field(name).type)
                                                  for name in OBJECT_TYPE.names], fields=list(OBJECT_TYPE))
            table = pa.Table.from_batches([images]).drop_columns(["position"])
            table = table.append_column("objects", pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), objects))
            writer.write_table(table.select(TABLE_SCHEMA.names).cast(TABLE_SCHEMA), row_group_size=ROW_GROUP)
            counts["images"] += images.num_rows
            counts["kept"] += kept.num_rows
    return counts


class _Boxes:
    """The sorted boxes, read a batch at a time and handed out up to an image position."""

    def __init__(self, path: Path):
        self.batches = pq.ParquetFile(path).iter_batches(batch_size=100_000)
        self.pending = SORTED_BOXES.empty_table()
        self.done = False

    def through(self, last: int) -> pa.Table:
        """The boxes of images at positions <= `last` (the rest stay for the next call)."""
        parts = [self.pending] if self.pending.num_rows else []
        while not self.done and (not parts or parts[-1].column("image")[-1].as_py() <= last):
            batch = next(self.batches, None)
            if batch is None:
                self.done = True
            elif batch.num_rows:
                parts.append(pa.Table.from_batches([batch]).cast(SORTED_BOXES))
        table = pa.concat_tables(parts) if parts else SORTED_BOXES.empty_table()
        cut = int(np.searchsorted(table.column("image").to_numpy(), last, side="right"))
        self.pending = table.slice(cut)
        return table.slice(0, cut)


def _cross_checks(db: duckdb.DuckDBPyConnection, source: AnnotationsSource, problems: Problems) -> None:
    """What only the whole file can say: duplicate image ids, boxes of unknown images or categories, boxes
    outside their image."""
    coco = source.instances is not None
    for position, key, first in db.execute(f"""
            SELECT position, image_key, first FROM (
              SELECT position, image_key, min(position) OVER (PARTITION BY image_key) AS first FROM images)
            WHERE position > first ORDER BY position LIMIT {MAX_PROBLEMS}""").fetchall():
        problems.add(f"images[{position}].id", f"{key} is also images[{first}].id; each picture needs its own id (else one "
                                               "image's boxes would be asked about another)")
    for position, key in db.execute(f"""
            SELECT position, image_key FROM annotations a WHERE NOT EXISTS (
              SELECT 1 FROM images i WHERE i.image_key = a.image_key) ORDER BY position LIMIT {MAX_PROBLEMS}""").fetchall():
        problems.add(f"annotations[{position}].image_id", f"{key} is not in images")
    for position, category in db.execute(f"""
            SELECT position, category FROM annotations a WHERE NOT EXISTS (
              SELECT 1 FROM labels l WHERE l.category = a.category) ORDER BY position LIMIT {MAX_PROBLEMS}""").fetchall():
        if coco:
            problems.add(f"annotations[{position}].category_id", f"{category} is not in categories")
        else:
            problems.add(f"row {position}", f"LabelName {category!r} is not in the class descriptions")
    if coco:
        for position, x, y, w, h, width, height in db.execute(f"""
                SELECT a.position, a.x, a.y, a.w, a.h, i.width, i.height FROM annotations a
                JOIN images i USING (image_key)
                WHERE i.width > 0 AND i.height > 0  -- else the image's size is the problem, said already
                  AND (a.x < -1 OR a.y < -1 OR a.x + a.w > i.width + 1 OR a.y + a.h > i.height + 1)
                ORDER BY a.position LIMIT {MAX_PROBLEMS}""").fetchall():
            problems.add(f"annotations[{position}].bbox", f"[{x:g}, {y:g}, {w:g}, {h:g}] reaches outside its "
                                                          f"{width}x{height} image")
        for position, mask_height, mask_width, pixels, width, height in db.execute(f"""
                SELECT a.position, a.mask_height, a.mask_width, a.mask_pixels, i.width, i.height FROM annotations a
                JOIN images i USING (image_key)
                WHERE a.mask_height IS NOT NULL AND i.width > 0 AND i.height > 0 AND (a.mask_height != i.height OR a.mask_width != i.width
                                                     OR a.mask_pixels != i.height * i.width)
                ORDER BY a.position LIMIT {MAX_PROBLEMS}""").fetchall():
            try:
                check_fits(MaskShape(mask_height, mask_width, pixels), height, width)
            except ValueError as exc:
                problems.add(f"annotations[{position}].segmentation", str(exc))


def _sql(path: Path) -> str:
    return str(path).replace("'", "''")

