"""Model perception for a build: run models only where the perception cache has nothing.

The source is read a window of images at a time (`forge.sources`). Each window's images are identified
by content, grouped by the tasks the cache lacks for them and run in streaming batches whose outputs
are appended to the cache as they arrive; the window's index (URI, content id, size, error, carried
metadata) is then staged, so a build that dies keeps every finished batch and every finished window.
Records are finally read back from the cache a window at a time. `forge explain` prints the plans of
these same steps (`ModelPerceiver.plans`).

Memory follows the window, plus 8 bytes per distinct image per task (`KeySet`): what lets an image
met again in a later window, or in a later build, be served from the cache instead of re-run; and 8 more
per distinct image for the build's own copies: the index marks every copy after an image's first in the
build, whose record is its id alone (`_unmeasured`), so a duplicate costs O(1) and nothing stays.

With `grounding: annotations` the source is an annotated dataset, staged once into a per-image table
(`forge.sources.annotated`); each window's boxes are put into the detections cache under the annotation
files' fingerprint instead of running a detector, and the models that remain (depth, segmentation
prompted by those boxes) run as for any source. The window's annotated size, camera, gravity and
non-exhaustive labels go into its index beside the images.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import daft
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from daft import DataFrame, col

from forge.judge import DEFAULT_CHUNK_SIZE
from forge.judge.hashing import image_keys
from forge.perception.annotations import cached_detections, check_image, shape_problem
from forge.perception.cache import DETECTIONS_TABLE, SCHEMAS, PerceptionCache
from forge.perception.models import records, run_models
from forge.perception.records import RECORD_SCHEMA
from forge.perception.tasks import TASKS, RunOptions, model_tasks, perception_label, tasks_of, together, who_makes_what
from forge.progress import ProgressFactory, StageTimes, no_progress
from forge.sources import Entry, Listing, listing
from forge.sources.annotated import AnnotatedImages, stage
from forge.sources.identity import KeySet, identify
from forge.spec.load import LoadedSpec
from forge.staging import write_checked
from forge.spec.schema import IMAGE_SOURCES, AnnotationsSource, ModelsPerception
from forge.store import Store

IMAGE_COLUMNS = ("path", "image_id", "width", "height")  # what the models read
ANNOTATED = ("annotated_width", "annotated_height", "extras", "not_exhaustive")  # what an annotated image's entry says
RECORD_INPUTS = (*IMAGE_COLUMNS, "exif_fx", "exif_fy", "meta", *ANNOTATED, "order")  # a record's inputs beside the cache
INDEX_SCHEMA = pa.schema([("path", pa.string()), ("image_id", pa.string()), ("width", pa.int64()),
                          ("height", pa.int64()), ("exif_fx", pa.float64()), ("exif_fy", pa.float64()),
                          ("error", pa.string()), ("meta", pa.string()), ("annotated_width", pa.int64()),
                          ("annotated_height", pa.int64()), ("extras", pa.string()),
                          ("not_exhaustive", pa.list_(pa.string())), ("repeated", pa.bool_())])
DOWNLOADS = ".forge-downloads"  # in the database folder: a window's downloaded images until its models have run


@dataclass
class ModelRunStats:
    """What perception cost this build: images each model ran on versus cache hits (a copy of an image
    met earlier counts as a hit: run + cached = the readable images the source lists)."""

    run: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    records: int = 0  # perception records: one per image the source lists, readable or not

    def line(self) -> str:
        return "; ".join(f"{TASKS[t].title}: {self.run[t]} run, {self.cached[t]} cached" for t in self.run)


class ModelPerceiver:
    """Model perception of a build: `prepare` walks the source a window at a time, identifying the
    images and running each model where the cache has nothing; `records` then reads the perception
    records of a range of them back from the cache (a window's first copies of its images in its order,
    then an id-only record per later copy and one per image of it that could not be read)."""

    WINDOW = DEFAULT_CHUNK_SIZE  # images read, identified and run at a time unless `prepare` is told otherwise

    def __init__(self, loaded: LoadedSpec, options: RunOptions, limit: int | None):
        spec = loaded.spec
        assert isinstance(spec.source, (*IMAGE_SOURCES, AnnotationsSource))
        assert isinstance(spec.perception, ModelsPerception)
        self.loaded, self.options, self.limit = loaded, options, limit
        self.store: Store | None = None  # the perception cache's database, from `prepare`
        self.perception = spec.perception
        self.annotated: AnnotatedImages | None = None  # an annotations source's staged table, from `inputs`
        self.listing: Listing | None = (None if isinstance(spec.source, AnnotationsSource)
                                        else listing(spec.source, loaded.base_dir))
        self.stats = ModelRunStats()
        self.index: list[str] = []  # the staged index files, one per window, from `prepare`
        self.keys = {name: task.cache_key(self.perception) for name, (task, _) in tasks_of(self.perception).items()}
        self.label = "reading perception"
        self.downloads: str | None = None  # where a window's URLs wait between identify and decode, during `prepare`

    @property
    def items(self) -> int:
        return self.stats.records

    def _cached(self, name: str) -> DataFrame:
        """The cached outputs of one task, with the task's column names (empty without a cache)."""
        task = TASKS[name]
        if self.store is not None:
            frame = PerceptionCache(self.store).frame(task.table, self.keys[name])
        else:
            frame = daft.from_arrow(SCHEMAS[task.table].empty_table()).exclude("key")
        stored = [c for c in SCHEMAS[task.table].names if c not in ("image_id", "key")]
        return frame.select("image_id", *[col(c).alias(n) for c, n in zip(stored, task.columns())])

    def model_plan(self, images: DataFrame, need: tuple[str, ...]) -> DataFrame:
        """The models of the tasks `need` on `images`; a segmenter whose boxes are cached is prompted with them."""
        for name in need:
            prompt = TASKS[name].prompted_by
            if prompt is not None and prompt not in need:
                images = images.join(self._cached(prompt), on="image_id")
        return run_models(images, self.perception, self.options, set(need), self.downloads)

    def records_plan(self, images: DataFrame, ids: list[str] | None = None) -> DataFrame:
        """Perception records of `images` from the cached outputs of every task (read for `ids` only, when
        given), in the order of the images' `order` column: which copy of an image is judged (the first)
        must not depend on how a join happened to order its output."""
        joined = images
        for name in self.keys:
            cached = self._cached(name)
            joined = joined.join(cached.where(col("image_id").is_in(ids)) if ids is not None else cached, on="image_id")
        return records(joined.sort("order"), self.perception, self.loaded.spec.objects)

    def plans(self) -> list[tuple[str, DataFrame]]:
        """The plans a build runs for each window, in order (`forge explain`; shown on the first window):
        models for images the cache lacks (here: every task, as on an empty cache), then the records
        read back from the cache. An annotations source is not staged to explain it: its plans are shown
        over no images."""
        first = next(self.listing.windows(self.WINDOW, self.limit)) if self.listing is not None else []
        identified = identify([uri for uri, _ in first]).where(col("error").is_null())
        images = identified.select(*IMAGE_COLUMNS)
        absent = {name: daft.lit(None).cast(daft.DataType.from_arrow_type(INDEX_SCHEMA.field(name).type))
                  for name in ("meta", *ANNOTATED)}
        with_meta = identified.with_columns({**absent, "order": daft.lit(0)})
        run = together(tuple(model_tasks(self.perception)), self.keys)
        title = (f"models ({', '.join(run)}), on the images of a window the perception cache lacks — "
                 f"{who_makes_what(self.perception)}")
        given = [TASKS[name].title for name in self.keys if name not in run]
        if given:
            title += f"; {', '.join(given)}: the annotations' boxes, put into the cache as they are (no model)"
        return [(title, self.model_plan(images, run)),
                ("records, read back from the perception cache a chunk at a time", self.records_plan(with_meta))]

    def inputs(self, db: Path, progress: ProgressFactory = no_progress,
               echo: Callable[[str], None] = lambda _: None) -> None:
        """An annotations source is staged into `db` (once per annotation file and label rules), said in a
        line to `echo`, and listed from its staged table."""
        source = self.loaded.spec.source
        if isinstance(source, AnnotationsSource):
            self.annotated = stage(source, self.loaded.base_dir, db, check_image, progress)
            self.listing = self.annotated.listing()
            echo(self.annotated.line())

    def prepare(self, store: Store, folder: Path, window: int = WINDOW, progress: ProgressFactory = no_progress,
                stages: StageTimes | None = None) -> None:
        """Walk the source `window` images at a time: identify them, run each model on the images it
        has not seen (cached per batch), stage the window's index in `folder`. Windows staged there by
        an interrupted run are kept. Times the `identify` and `models` stages into `stages`."""
        assert self.listing is not None, "inputs first"
        self.store = store
        stages = stages if stages is not None else StageTimes()
        cache = PerceptionCache(store)
        have = {name: KeySet(cache.cached_keys(TASKS[name].table, key)) if self.options.use_cache else KeySet()
                for name, key in self.keys.items()}
        self.stats.run = dict.fromkeys(self.keys, 0)
        self.stats.cached = dict.fromkeys(self.keys, 0)
        self.stats.records = 0
        seen = KeySet()  # images of this build's windows so far: a later copy is `repeated` in the index
        folder.mkdir(parents=True, exist_ok=True)
        total = min(self.listing.total, self.limit or self.listing.total)
        tasks = " + ".join(self.keys)
        with progress(f"perceiving with {tasks}", total, "images") as bar:
            for number, entries in enumerate(self.listing.windows(window, self.limit)):
                target = folder / f"{number:06d}.parquet"
                if not target.exists():
                    index = self._window(entries, number * window, cache, have, seen, stages, bar)
                    write_checked(target, lambda tmp, table=index: pq.write_table(table, tmp), folder.parent)
                else:  # staged by an interrupted run of this build (same cache keys), which ran the models
                    ids = pl.read_parquet(target, columns=["image_id"])["image_id"].drop_nulls()
                    for name in self.keys:
                        self.stats.cached[name] += ids.len()
                    seen.add(image_keys(ids).to_numpy())
                    bar.update(len(entries))
                self.index.append(str(target))
                self.stats.records += len(entries)  # an index row per listed image, readable or not

    def _window(self, entries: list[Entry], start: int, cache: PerceptionCache, have: dict[str, KeySet],
                seen: KeySet, stages: StageTimes, bar) -> pa.Table:
        """Identify a window's images (items `start`... of the source) and run the models it needs; its
        index (`INDEX_SCHEMA`), in which a copy of an image in `seen` or earlier in the window is `repeated`."""
        self.downloads = str(self.store.path / DOWNLOADS)  # a rerun after a crash finds what was fetched
        with stages.stage("identify") as stage:
            found = pa.concat_tables(pa.Table.from_batches([batch]) for batch in
                                     identify([uri for uri, _ in entries], self.downloads).to_arrow_iter())
            stage.counts["images"] = stage.counts.get("images", 0) + len(entries)
        rows = found.to_pylist()
        if [row["path"] for row in rows] != [uri for uri, _ in entries]:  # metadata is matched to rows by position
            raise RuntimeError("identify returned the window's images in another order")
        given = self._annotated(rows, start)
        unique: dict[str, dict] = {}
        for row in rows:
            if row["error"] is None:
                unique.setdefault(row["image_id"], row)  # same bytes at another path: perceived once
        ids = list(unique)
        keys = image_keys(pl.Series(ids, dtype=pl.String)).to_numpy() if ids else np.zeros(0, dtype=np.uint64)
        cached = {name: have[name].has(keys) for name in self.keys}
        ran = dict(self.stats.run)
        broken: dict[str, str] = {}
        if given is not None:
            broken = self._given_boxes(rows, given, ids, keys, cached, cache, have)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i in range(len(ids)):
            tasks = together(tuple(name for name in self.keys if not cached[name][i]), self.keys)
            if tasks and ids[i] not in broken:
                groups.setdefault(tasks, []).append(i)
        bar.update(len(rows) - sum(len(members) for members in groups.values()))
        with stages.stage("models") as stage:
            for tasks, members in sorted(groups.items()):
                images = daft.from_pylist([{k: unique[ids[i]][k] for k in IMAGE_COLUMNS} for i in members])
                for batch in self.model_plan(images, tasks).to_arrow_iter():
                    broken.update(self._store_batch(pa.Table.from_batches([batch]), cache, tasks))
                    bar.update(batch.num_rows)
                cached_now = np.array([ids[i] not in broken for i in members], dtype=bool)  # what failed is not cached
                for name in tasks:
                    have[name].add(keys[members][cached_now])
            stage.counts["images"] = stage.counts.get("images", 0) + sum(len(m) for m in groups.values())
        shutil.rmtree(self.downloads, ignore_errors=True)  # every model has read them
        self.downloads = None
        errors = [broken.get(row["image_id"], row["error"]) for row in rows]
        readable = sum(1 for error in errors if error is None)
        repeats = self._repeats(rows, errors, ids, keys, seen)
        seen.add(keys[np.array([image_id not in broken for image_id in ids], dtype=bool)])
        for name in self.keys:  # run + cached = the readable images: copies and earlier images were served from the cache
            self.stats.cached[name] += readable - (self.stats.run[name] - ran[name])
        metas = [_json(meta) for _, meta in entries]
        annotated = {name: [entry[name] for entry in given] if given is not None else [None] * len(rows)
                     for name in ANNOTATED}
        return pa.table({"path": found.column("path"), "image_id": [None if e else r["image_id"] for e, r in zip(errors, rows)],
                         "width": found.column("width"), "height": found.column("height"),
                         "exif_fx": found.column("exif_fx"), "exif_fy": found.column("exif_fy"), "error": errors,
                         "meta": metas, **annotated, "repeated": repeats}, schema=INDEX_SCHEMA)

    @staticmethod
    def _repeats(rows: list[dict], errors: list[str | None], ids: list[str], keys: np.ndarray, seen: KeySet) -> list[bool]:
        """Whether each readable row of a window is a later copy: of an image of an earlier window (`seen`),
        or of one earlier in this window."""
        earlier = dict(zip(ids, seen.has(keys).tolist()))
        out = []
        for row, error in zip(rows, errors):
            if error is not None:
                out.append(False)
                continue
            out.append(earlier[row["image_id"]])
            earlier[row["image_id"]] = True
        return out

    def _annotated(self, rows: list[dict], start: int) -> list[dict] | None:
        """The annotations of a window's images (rows `start`... of the staged table, as the listing gave
        them), with what their entries say (`ANNOTATED`); an image of another shape than its annotation
        states gets its error. None for sources without annotations."""
        if self.annotated is None:
            return None
        given = self.annotated.read(start, start + len(rows)).to_pylist()
        for row, entry in zip(rows, given, strict=True):
            if row["path"] != self.annotated.uri(entry["file_name"]):
                raise RuntimeError("the staged annotation table and its listing disagree")
            entry.update(annotated_width=entry["width"], annotated_height=entry["height"])
            if row["error"] is None and entry["width"] is not None:
                row["error"] = shape_problem((row["width"], row["height"]), (entry["width"], entry["height"]))
        return given

    def _given_boxes(self, rows: list[dict], given: list[dict], ids: list[str], keys: np.ndarray,
                     cached: dict[str, np.ndarray], cache: PerceptionCache, have: dict[str, KeySet]) -> dict[str, str]:
        """Put the annotated objects of the window's images that the cache lacks into the detections cache,
        where a detector's would go (`grounding: annotations`); image id -> why, for an image whose
        annotation does not fit it (a mask of another size)."""
        first: dict[str, tuple[dict, dict]] = {}
        for row, entry in zip(rows, given):
            if row["error"] is None:
                first.setdefault(row["image_id"], (row, entry))  # the copy that is perceived
        stored: list[int] = []
        boxes: list[list[dict]] = []
        broken: dict[str, str] = {}
        for i in np.flatnonzero(~cached["grounding"]):
            row, entry = first[ids[i]]
            real = (row["width"], row["height"])
            try:
                boxes.append(cached_detections(entry["objects"], (entry["width"] or real[0], entry["height"] or real[1]),
                                               real))
                stored.append(int(i))
            except ValueError as exc:
                broken[ids[i]] = f"annotation does not fit the image: {exc}"
        if stored:
            cache.add(DETECTIONS_TABLE, pa.table({"image_id": [ids[i] for i in stored],
                                                  "key": [self.keys["grounding"]] * len(stored), "detections": boxes}))
            have["grounding"].add(keys[stored])
            cached["grounding"][stored] = True
            self.stats.run["grounding"] += len(stored)
        return broken

    def _store_batch(self, batch: pa.Table, cache: PerceptionCache, need: tuple[str, ...]) -> dict[str, str]:
        """Cache one batch of model outputs, task by task; returns image id -> why, for images that did not decode."""
        ok = batch.filter(batch.column("prepare_error").is_null())
        for name in need:
            task = TASKS[name]
            stored = [c for c in SCHEMAS[task.table].names if c not in ("image_id", "key")]
            columns = {"image_id": ok.column("image_id"), "key": pa.array([self.keys[name]] * ok.num_rows, pa.string()),
                       **{c: ok.column(n) for c, n in zip(stored, task.columns())}}
            cache.add(task.table, pa.table(columns))
            self.stats.run[name] += ok.num_rows
        broken = batch.filter(batch.column("prepare_error").is_valid())
        return dict(zip(broken.column("image_id").to_pylist(), broken.column("prepare_error").to_pylist()))

    def records(self, start: int, stop: int) -> DataFrame:
        """Perception records of items [start, stop) of the staged index: cached model outputs turned
        into objects with depth for each image's first copy in the build, then an id-only record per later
        copy, then a record per image that could not be perceived."""
        index = pl.scan_parquet(self.index).slice(start, stop - start).collect().with_row_index("order")
        frames = []
        readable = pl.col("error").is_null()
        images = index.filter(readable & ~pl.col("repeated"))
        if images.height:
            frames.append(self.records_plan(daft.from_arrow(images.select(*RECORD_INPUTS).to_arrow()),
                                            images["image_id"].to_list()))
        unmeasured = index.filter(~readable | pl.col("repeated"))  # later copies (their id only) and the unreadable
        if unmeasured.height:
            frames.append(daft.from_arrow(_unmeasured(unmeasured, perception_label(self.perception))))
        out = frames[0]
        for frame in frames[1:]:
            out = out.concat(frame)
        return out


def _json(meta: dict | None) -> str | None:
    """Carried fields as a JSON object; NaN and infinities (not JSON) become null."""
    if meta is None:
        return None
    clean = {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in meta.items()}
    return json.dumps(clean, sort_keys=True, default=str, allow_nan=False)


def _unmeasured(index: pl.DataFrame, perception: str) -> pa.Table:
    """Records of index rows nothing is measured for: a later copy of an image (its id; the build judges the
    first copy and skips the rest by id) or an unreadable image (its error). Built a column at a time, so a
    window of 20,000 copies or missing files costs milliseconds, not a Python dict per row."""
    columns = {"image_id": index["image_id"].to_arrow(), "image_uri": index["path"].to_arrow(),
               "perception": pa.array([perception] * index.height, pa.string()), "error": index["error"].to_arrow(),
               "objects": pa.array([[]] * index.height, RECORD_SCHEMA.field("objects").type)}
    return pa.table([columns[f.name].cast(f.type) if f.name in columns else pa.nulls(index.height, f.type)
                     for f in RECORD_SCHEMA], schema=RECORD_SCHEMA)
