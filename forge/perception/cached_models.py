"""Model perception for a build: run models only where the perception cache has nothing.

Images are identified by content, split into what needs depth, detections or both, run in
streaming batches whose outputs are appended to the cache as they arrive, and finally read
back from the cache, so a build that dies keeps every finished batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import daft
import pyarrow as pa
from daft import DataFrame, col

from forge.perception.cache import DEPTH_TABLE, DETECTIONS_TABLE, PerceptionCache
from forge.perception.models import (RunOptions, depth_cache_key, grounding_cache_key, identify, list_images,
                                     perception_label, records, run_models)
from forge.perception.records import PERCEIVED_TYPE, failed
from forge.spec.load import LoadedSpec
from forge.spec.schema import ImagesSource, ModelsPerception
from forge.store import Store


@dataclass
class ModelRunStats:
    """What perception cost this build: model runs versus cache hits, per model."""

    depth_run: int = 0
    depth_cached: int = 0
    detections_run: int = 0
    detections_cached: int = 0
    duplicates: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def perceive_models_cached(loaded: LoadedSpec, store: Store, options: RunOptions, limit: int | None,
                           echo: Callable[[str], None]) -> tuple[DataFrame, ModelRunStats]:
    spec = loaded.spec
    assert isinstance(spec.source, ImagesSource) and isinstance(spec.perception, ModelsPerception)
    perception = spec.perception
    stats = ModelRunStats()
    files = list_images(spec.source, loaded.base_dir)[:limit]
    echo(f"identifying {len(files)} images ...")
    ids = identify(files).to_arrow().to_pylist()
    unique: dict[str, dict] = {}
    for row in ids:
        if row["error"] is not None:
            stats.failures.append((row["path"], row["error"]))
        elif row["image_id"] in unique:
            stats.duplicates += 1  # same bytes at another path: perceive and ask about it once
        else:
            unique[row["image_id"]] = row

    cache = PerceptionCache(store)
    depth_key, grounding_key = depth_cache_key(perception.depth), grounding_cache_key(perception.grounding)
    have_depth = cache.cached_ids(DEPTH_TABLE, depth_key) if options.use_cache else set()
    have_detections = cache.cached_ids(DETECTIONS_TABLE, grounding_key) if options.use_cache else set()
    groups: dict[tuple[bool, bool], list[dict]] = {}
    for image_id, row in unique.items():
        need = (image_id not in have_depth, image_id not in have_detections)
        if any(need):
            groups.setdefault(need, []).append({k: row[k] for k in ("path", "image_id", "width", "height")})
    stats.depth_cached = sum(1 for i in unique if i in have_depth)
    stats.detections_cached = sum(1 for i in unique if i in have_detections)

    for (need_depth, need_detections), rows in sorted(groups.items()):
        models = " + ".join(m for m, need in (("depth", need_depth), ("grounding", need_detections)) if need)
        echo(f"running {models} on {len(rows)} images ...")
        outputs = run_models(daft.from_pylist(rows), perception, options, depth=need_depth, grounding=need_detections)
        for batch in outputs.to_arrow_iter():
            _store_batch(pa.Table.from_batches([batch]), cache, depth_key if need_depth else None,
                         grounding_key if need_detections else None, stats)

    known = daft.from_pylist(list(unique.values())) if unique else None
    label = perception_label(perception)
    failed_rows = [failed(path, label, reason) for path, reason in stats.failures]
    frames = []
    if known is not None:
        joined = known.exclude("error").join(cache.frame(DEPTH_TABLE, depth_key), on="image_id").join(
            cache.frame(DETECTIONS_TABLE, grounding_key), on="image_id")
        frames.append(records(joined, perception, spec.objects.depth_percentile))
    if failed_rows:
        failed_frame = daft.from_pylist(failed_rows)
        frames.append(failed_frame.select(*[col(name).cast(dtype) for name, dtype in _perceived_fields()]))
    perceived = frames[0]
    for frame in frames[1:]:
        perceived = perceived.concat(frame)
    return perceived, stats


def _perceived_fields() -> list[tuple[str, daft.DataType]]:
    arrow = PERCEIVED_TYPE.to_arrow_dtype()
    return [(f.name, daft.DataType.from_arrow_type(f.type)) for f in arrow]


def _store_batch(batch: pa.Table, cache: PerceptionCache, depth_key: str | None, grounding_key: str | None,
                 stats: ModelRunStats) -> None:
    ok = batch.filter(batch.column("prepare_error").is_null())
    for row in batch.filter(batch.column("prepare_error").is_valid()).to_pylist():
        stats.failures.append((row["path"], row["prepare_error"]))
    if depth_key is not None:
        cache.add(DEPTH_TABLE, pa.table({
            "image_id": ok.column("image_id"), "key": pa.array([depth_key] * ok.num_rows, pa.string()),
            "kind": ok.column("kind"), "rows": ok.column("rows"), "cols": ok.column("cols"), "depth": ok.column("depth")}))
        stats.depth_run += ok.num_rows
    if grounding_key is not None:
        cache.add(DETECTIONS_TABLE, pa.table({
            "image_id": ok.column("image_id"), "key": pa.array([grounding_key] * ok.num_rows, pa.string()),
            "detections": ok.column("detections")}))
        stats.detections_run += ok.num_rows
