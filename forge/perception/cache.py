"""The perception cache: model outputs per (image content id, model fingerprint + parameters).

Depth maps, detections and masks are cached in separate tables (`tasks.py` lists the tasks and
their keys), so a new vocabulary re-runs only the detector and segmentation, a new depth model
only depth. Rows are appended batch by batch while models run, so an interrupted build keeps
every batch it finished.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import daft
import numpy as np
import polars as pl
import pyarrow as pa

from forge.judge.hashing import image_keys
from forge.store import Store

DEPTH_TABLE, DETECTIONS_TABLE, MASKS_TABLE = "perception_depth", "perception_detections", "perception_masks"

DEPTH_SCHEMA = pa.schema([
    pa.field("image_id", pa.string()),
    pa.field("key", pa.string()),
    pa.field("kind", pa.string()),
    pa.field("rows", pa.int32()),
    pa.field("cols", pa.int32()),
    pa.field("depth", pa.binary()),  # float16, row-major (rows, cols), distance: larger = farther
    pa.field("fov", pa.float64()),  # horizontal field of view in degrees, for models that predict it (else null)
])
DETECTION_TYPE = pa.struct([
    pa.field("label", pa.string()), pa.field("score", pa.float64()),
    pa.field("x1", pa.float64()), pa.field("y1", pa.float64()), pa.field("x2", pa.float64()), pa.field("y2", pa.float64()),
    # from an annotations source (`grounding: annotations`); null from a detector
    pa.field("annotation_id", pa.string()), pa.field("crowd", pa.bool_()), pa.field("depiction", pa.bool_()),
    pa.field("truncated", pa.bool_()), pa.field("mask", pa.string()),  # the annotation's mask: RLE counts at the image's size
])
DETECTIONS_SCHEMA = pa.schema([
    pa.field("image_id", pa.string()),
    pa.field("key", pa.string()),
    pa.field("detections", pa.list_(DETECTION_TYPE)),
])
MASKS_SCHEMA = pa.schema([
    pa.field("image_id", pa.string()),
    pa.field("key", pa.string()),
    pa.field("masks", pa.list_(pa.string())),  # per detection, in its order: COCO RLE counts at the image's size or null
])
SCHEMAS = {DEPTH_TABLE: DEPTH_SCHEMA, DETECTIONS_TABLE: DETECTIONS_SCHEMA, MASKS_TABLE: MASKS_SCHEMA}

CACHE_FORMAT = 3  # bump when what is cached changes meaning


def model_fingerprint(model: str) -> str:
    """Identity of a model's weights: a local folder by its config and weight files, a hub id by revision."""
    folder = Path(model)
    if folder.is_dir():
        digest = hashlib.sha256((folder / "config.json").read_bytes())
        for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
            stat = weights.stat()
            digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return f"local:{digest.hexdigest()[:16]}"
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json")
    revision = Path(cached).parent.name if isinstance(cached, str) else "unknown"
    return f"hub:{model}@{revision}"


def cache_key(**params: object) -> str:
    canonical = json.dumps(dict(params, format=CACHE_FORMAT), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class PerceptionCache:
    """Reads and appends cached model outputs in the build's database."""

    def __init__(self, store: Store):
        self.store = store

    def _table(self, table: str):
        """The cache table; one an older forge wrote with other columns is dropped (its keys, made under an
        older CACHE_FORMAT, would never be read again)."""
        if table in self.store.db.list_tables().tables and self.store.db.open_table(table).schema != SCHEMAS[table]:
            self.store.db.drop_table(table)
        return self.store.table(table, SCHEMAS[table])

    def cached_keys(self, table: str, key: str) -> np.ndarray:
        """The image keys (`image_keys`: 8 bytes each) of the images cached under `key`, read a batch at a time."""
        if table not in self.store.db.list_tables().tables:
            return np.zeros(0, dtype=np.uint64)
        dataset = self._table(table).to_lance()
        parts = [image_keys(pl.Series(batch.column(0))).to_numpy()
                 for batch in dataset.to_batches(columns=["image_id"], filter=f"key = '{key}'") if batch.num_rows]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)

    def add(self, table: str, rows: pa.Table) -> None:
        """Upsert rows on (image_id, key): one row per image and key, the latest run wins."""
        if rows.num_rows:
            target = self._table(table)
            merge = target.merge_insert(["image_id", "key"]).when_matched_update_all().when_not_matched_insert_all()
            merge.execute(rows.cast(SCHEMAS[table]))

    def frame(self, table: str, key: str) -> daft.DataFrame:
        """Lazy cached rows for one key, for joining with the images of a build."""
        self._table(table)
        return daft.read_lance(str(self.store.path / f"{table}.lance")).where(daft.col("key") == key).exclude("key")
