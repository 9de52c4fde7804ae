"""Model perception for a build: run models only where the perception cache has nothing.

Images are identified by content, grouped by the tasks the cache lacks for them, run in
streaming batches whose outputs are appended to the cache as they arrive, and finally read back
from the cache, so a build that dies keeps every finished batch. `forge explain` prints the
plans of these same steps (`ModelPerceiver.plans`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

import daft
import pyarrow as pa
from daft import DataFrame, col

from forge.perception.cache import SCHEMAS, PerceptionCache
from forge.perception.models import identify, list_images, records, run_models
from forge.perception.records import PERCEIVED_TYPE, failed
from forge.perception.tasks import TASKS, RunOptions, perception_label, tasks_of
from forge.progress import ProgressFactory, StageTimes, no_progress
from forge.spec.load import LoadedSpec
from forge.spec.schema import ImagesSource, ModelsPerception, TableSource, UrlsSource, WebDatasetSource
from forge.store import Store

IMAGE_COLUMNS = ("path", "image_id", "width", "height")
DOWNLOADS = ".forge-downloads"  # in the database folder: downloaded images until the models have run


@dataclass
class ModelRunStats:
    """What perception cost this build: images each model ran on versus cache hits."""

    run: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    records: int = 0  # perception records: one per distinct readable image plus one per unreadable file

    def line(self) -> str:
        parts = [f"{TASKS[t].title}: {self.run[t]} run, {self.cached[t]} cached" for t in self.run]
        return "; ".join(parts) + f"; {self.duplicates} duplicate images"


class ModelPerceiver:
    """Model perception of a build: `prepare` identifies the images and runs the models where the
    cache has nothing; `records` then reads the perception records of a range of them back from
    the cache (the images in file order, then one record per image that could not be read)."""

    def __init__(self, loaded: LoadedSpec, options: RunOptions, limit: int | None):
        spec = loaded.spec
        assert isinstance(spec.source, (ImagesSource, UrlsSource, TableSource, WebDatasetSource))
        assert isinstance(spec.perception, ModelsPerception)
        self.loaded, self.options = loaded, options
        self.store: Store | None = None  # the perception cache's database, from `prepare`
        self.perception = spec.perception
        self.files = list_images(spec.source, loaded.base_dir)[:limit]
        self.stats = ModelRunStats()
        self.images: list[dict] = []
        self.keys = {name: task.cache_key(self.perception) for name, (task, _) in tasks_of(self.perception).items()}
        self.label = "reading perception"
        self.downloads: str | None = None  # where URLs wait between identify and decode, during `prepare`

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
        """Perception records of `images` from the cached outputs of every task (read for `ids` only, when given)."""
        joined = images
        for name in self.keys:
            cached = self._cached(name)
            joined = joined.join(cached.where(col("image_id").is_in(ids)) if ids is not None else cached, on="image_id")
        return records(joined, self.perception, self.loaded.spec.objects)

    def plans(self) -> list[tuple[str, DataFrame]]:
        """The plans a build runs, in order (`forge explain`): models for images the cache lacks
        (here: every task, as on an empty cache), then the records read back from the cache."""
        images = identify(self.files).where(col("error").is_null()).select(*IMAGE_COLUMNS)
        return [("models, on the images the perception cache lacks", self.model_plan(images, tuple(self.keys))),
                ("records, read back from the perception cache a chunk at a time", self.records_plan(images))]

    def prepare(self, store: Store, progress: ProgressFactory = no_progress, stages: StageTimes | None = None) -> None:
        """Identify every image, then run each model on the images it has not seen (cached per batch).

        Times the `identify` and `models` stages into `stages` and shows a progress bar per model run.
        """
        self.store = store
        self.downloads = str(store.path / DOWNLOADS)  # a rerun after a crash finds what was fetched
        stats = self.stats
        stages = stages if stages is not None else StageTimes()
        with stages.stage("identify") as stage, progress("identifying", len(self.files), "images") as bar:
            ids = []
            for batch in identify(self.files, self.downloads).to_arrow_iter():
                ids.extend(batch.to_pylist())
                bar.update(batch.num_rows)
            stage.counts["images"] = len(ids)
        unique: dict[str, dict] = {}
        for row in ids:
            if row["error"] is not None:
                stats.failures.append((row["path"], row["error"]))
            elif row["image_id"] in unique:
                stats.duplicates += 1  # same bytes at another path: perceive and ask about it once
            else:
                unique[row["image_id"]] = row

        cache = PerceptionCache(store)
        have = {name: cache.cached_ids(TASKS[name].table, key) if self.options.use_cache else set()
                for name, key in self.keys.items()}
        groups: dict[tuple[str, ...], list[dict]] = {}
        for image_id, row in unique.items():
            need = tuple(name for name in self.keys if image_id not in have[name])
            if need:
                groups.setdefault(need, []).append({k: row[k] for k in IMAGE_COLUMNS})
        for name in self.keys:
            stats.cached[name] = sum(1 for i in unique if i in have[name])
            stats.run[name] = 0

        with stages.stage("models") as stage:
            for need, rows in sorted(groups.items()):
                with progress(f"running {' + '.join(need)}", len(rows), "images") as bar:
                    for batch in self.model_plan(daft.from_pylist(rows), need).to_arrow_iter():
                        self._store_batch(pa.Table.from_batches([batch]), cache, need)
                        bar.update(batch.num_rows)
            stage.counts["images"] = sum(len(rows) for rows in groups.values())
        shutil.rmtree(self.downloads, ignore_errors=True)  # every model has read them
        self.downloads = None
        undecodable = {path for path, _ in stats.failures}
        self.images = [{k: row[k] for k in IMAGE_COLUMNS} for row in unique.values() if row["path"] not in undecodable]
        stats.records = len(self.images) + len(stats.failures)

    def records(self, start: int, stop: int) -> DataFrame:
        """Perception records of items [start, stop): cached model outputs turned into objects with depth."""
        frames = []
        images = self.images[start:stop]
        if images:
            frames.append(self.records_plan(daft.from_pylist(images), [row["image_id"] for row in images]))
        failures = self.stats.failures[max(0, start - len(self.images)):max(0, stop - len(self.images))]
        if failures:
            label = perception_label(self.perception)
            failed_frame = daft.from_pylist([failed(path, label, reason) for path, reason in failures])
            frames.append(failed_frame.select(*[col(name).cast(dtype) for name, dtype in _perceived_fields()]))
        out = frames[0]
        for frame in frames[1:]:
            out = out.concat(frame)
        return out

    def _store_batch(self, batch: pa.Table, cache: PerceptionCache, need: tuple[str, ...]) -> None:
        """Cache one batch of model outputs, task by task; images that did not decode become failures."""
        ok = batch.filter(batch.column("prepare_error").is_null())
        for row in batch.filter(batch.column("prepare_error").is_valid()).to_pylist():
            self.stats.failures.append((row["path"], row["prepare_error"]))
        for name in need:
            task = TASKS[name]
            stored = [c for c in SCHEMAS[task.table].names if c not in ("image_id", "key")]
            columns = {"image_id": ok.column("image_id"), "key": pa.array([self.keys[name]] * ok.num_rows, pa.string()),
                       **{c: ok.column(n) for c, n in zip(stored, task.columns())}}
            cache.add(task.table, pa.table(columns))
            self.stats.run[name] += ok.num_rows


def _perceived_fields() -> list[tuple[str, daft.DataType]]:
    arrow = PERCEIVED_TYPE.to_arrow_dtype()
    return [(f.name, daft.DataType.from_arrow_type(f.type)) for f in arrow]
