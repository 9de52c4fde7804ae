"""Model perception for a build: run models only where the perception cache has nothing.

Images are identified by content, split into what needs depth, detections or both, run in
streaming batches whose outputs are appended to the cache as they arrive, and finally read
back from the cache, so a build that dies keeps every finished batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import daft
import pyarrow as pa
from daft import DataFrame, col

from forge.perception.cache import DEPTH_TABLE, DETECTIONS_TABLE, PerceptionCache
from forge.perception.models import (DETECTION_TASKS, RunOptions, cold_plan, depth_columns, identify, list_images,
                                     perception_label, records, run_models, task_cache_key, task_models)
from forge.perception.records import PERCEIVED_TYPE, failed
from forge.progress import ProgressFactory, StageTimes, no_progress
from forge.spec.load import LoadedSpec
from forge.spec.schema import ImagesSource, ModelsPerception, UrlsSource
from forge.store import Store


TABLES = {"depth": DEPTH_TABLE, "check": DEPTH_TABLE, "grounding": DETECTIONS_TABLE,
          "flip_depth": DEPTH_TABLE, "flip_grounding": DETECTIONS_TABLE}
TASK_NAMES = {"depth": "depth", "check": "check depth", "grounding": "detections",
              "flip_depth": "mirrored depth", "flip_grounding": "mirrored detections"}


@dataclass
class ModelRunStats:
    """What perception cost this build: images each model ran on versus cache hits."""

    run: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    records: int = 0  # perception records: one per distinct readable image plus one per unreadable file

    def line(self) -> str:
        parts = [f"{TASK_NAMES[t]}: {self.run[t]} run, {self.cached[t]} cached" for t in self.run]
        return "; ".join(parts) + f"; {self.duplicates} duplicate images"


class ModelPerceiver:
    """Model perception of a build: `prepare` identifies the images and runs the models where the
    cache has nothing; `records` then reads the perception records of a range of them back from
    the cache (the images in file order, then one record per image that could not be read)."""

    def __init__(self, loaded: LoadedSpec, options: RunOptions, limit: int | None):
        spec = loaded.spec
        assert isinstance(spec.source, (ImagesSource, UrlsSource)) and isinstance(spec.perception, ModelsPerception)
        self.loaded, self.options = loaded, options
        self.store: Store | None = None  # the perception cache's database, from `prepare`
        self.perception = spec.perception
        self.files = list_images(spec.source, loaded.base_dir)[:limit]
        self.stats = ModelRunStats()
        self.images: list[dict] = []
        self.keys = {task: task_cache_key(task, model) for task, model in task_models(self.perception).items()}
        self.label = "reading perception"

    @property
    def items(self) -> int:
        return self.stats.records

    def plan(self) -> DataFrame:
        return cold_plan(self.files, self.perception, self.loaded.spec.objects, self.options)

    def prepare(self, store: Store, progress: ProgressFactory = no_progress, stages: StageTimes | None = None) -> None:
        """Identify every image, then run each model on the images it has not seen (cached per batch).

        Times the `identify` and `models` stages into `stages` and shows a progress bar per model run.
        """
        self.store = store
        stats, perception = self.stats, self.perception
        stages = stages if stages is not None else StageTimes()
        with stages.stage("identify") as stage, progress("identifying", len(self.files), "images") as bar:
            ids = []
            for batch in identify(self.files).to_arrow_iter():
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

        cache = PerceptionCache(self.store)
        tasks = task_models(perception)
        have = {task: cache.cached_ids(TABLES[task], key) if self.options.use_cache else set()
                for task, key in self.keys.items()}
        groups: dict[tuple[str, ...], list[dict]] = {}
        for image_id, row in unique.items():
            need = tuple(task for task in tasks if image_id not in have[task])
            if need:
                groups.setdefault(need, []).append({k: row[k] for k in ("path", "image_id", "width", "height")})
        for task in tasks:
            stats.cached[task] = sum(1 for i in unique if i in have[task])
            stats.run[task] = 0

        with stages.stage("models") as stage:
            for need, rows in sorted(groups.items()):
                with progress(f"running {' + '.join(need)}", len(rows), "images") as bar:
                    outputs = run_models(daft.from_pylist(rows), perception, self.options, set(need))
                    for batch in outputs.to_arrow_iter():
                        _store_batch(pa.Table.from_batches([batch]), cache, {task: self.keys[task] for task in need}, stats)
                        bar.update(batch.num_rows)
            stage.counts["images"] = sum(len(rows) for rows in groups.values())
        undecodable = {path for path, _ in stats.failures}
        self.images = [{k: v for k, v in row.items() if k != "error"} for row in unique.values()
                       if row["path"] not in undecodable]
        stats.records = len(self.images) + len(stats.failures)

    def records(self, start: int, stop: int) -> DataFrame:
        """Perception records of items [start, stop): cached model outputs turned into objects with depth."""
        frames = []
        images = self.images[start:stop]
        if images:
            joined = daft.from_pylist(images)
            ids = [row["image_id"] for row in images]
            cache = PerceptionCache(self.store)
            for task, key in self.keys.items():
                cached = cache.frame(TABLES[task], key).where(col("image_id").is_in(ids))
                if task in DETECTION_TASKS:
                    cached = cached.select("image_id", col("detections").alias(DETECTION_TASKS[task]))
                else:
                    cached = cached.select("image_id", *[col(c).alias(n) for c, n in zip(("kind", "rows", "cols", "depth"), depth_columns(task))])
                joined = joined.join(cached, on="image_id")
            frames.append(records(joined, self.perception, self.loaded.spec.objects))
        failures = self.stats.failures[max(0, start - len(self.images)):max(0, stop - len(self.images))]
        if failures:
            label = perception_label(self.perception)
            failed_frame = daft.from_pylist([failed(path, label, reason) for path, reason in failures])
            frames.append(failed_frame.select(*[col(name).cast(dtype) for name, dtype in _perceived_fields()]))
        out = frames[0]
        for frame in frames[1:]:
            out = out.concat(frame)
        return out


def _perceived_fields() -> list[tuple[str, daft.DataType]]:
    arrow = PERCEIVED_TYPE.to_arrow_dtype()
    return [(f.name, daft.DataType.from_arrow_type(f.type)) for f in arrow]


def _store_batch(batch: pa.Table, cache: PerceptionCache, keys: dict[str, str], stats: ModelRunStats) -> None:
    ok = batch.filter(batch.column("prepare_error").is_null())
    for row in batch.filter(batch.column("prepare_error").is_valid()).to_pylist():
        stats.failures.append((row["path"], row["prepare_error"]))
    for task, key in keys.items():
        columns = {"image_id": ok.column("image_id"), "key": pa.array([key] * ok.num_rows, pa.string())}
        if task in DETECTION_TASKS:
            columns["detections"] = ok.column(DETECTION_TASKS[task])
        else:
            for name, column in zip(("kind", "rows", "cols", "depth"), depth_columns(task)):
                columns[name] = ok.column(column)
        cache.add(TABLES[task], pa.table(columns))
        stats.run[task] += ok.num_rows
