"""Which image is which: a content id from the bytes (so the same picture has one id wherever it
lives), the displayed size and the EXIF focal length from the header, and the set of ids already met,
to judge a copy once."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor

import daft
import numpy as np
from daft import DataFrame, DataType, Series, col
from PIL import Image

from forge.sources.decoding import UNREADABLE, check_size, oriented_size, reason
from forge.sources.exif import exif_focal
from forge.sources.reading import Downloads

THREADS = max(1, min(16, os.cpu_count() or 1))
ID_TYPE = DataType.struct({"image_id": DataType.string(), "width": DataType.int64(), "height": DataType.int64(),
                           "exif_fx": DataType.float64(), "exif_fy": DataType.float64(), "error": DataType.string()})
UNREAD = {"image_id": None, "width": None, "height": None, "exif_fx": None, "exif_fy": None}


def content_id(data: bytes) -> str:
    """Image id: hash of the file's bytes, so the same picture has one id wherever it lives."""
    return hashlib.sha256(data).hexdigest()[:32]


def _identify(path: str, downloads: Downloads) -> dict:
    try:
        data = downloads.read(path)
        with Image.open(io.BytesIO(data)) as img:
            check_size(img)
            width, height = oriented_size(img)
            focal = exif_focal(img)
    except UNREADABLE as exc:
        return {**UNREAD, "error": f"cannot read image: {reason(exc)}"}
    if width < 1 or height < 1:
        return {**UNREAD, "error": f"image has no pixels ({width}x{height})"}
    return {"image_id": content_id(data), "width": width, "height": height, "exif_fx": focal[0] if focal else None,
            "exif_fy": focal[1] if focal else None, "error": None}


@daft.cls
class IdentifyImages:
    """Content id and displayed size of each image (CPU, threads), or why it cannot be read."""

    def __init__(self, downloads: str | None = None):
        self.downloads = Downloads(downloads)

    @daft.method.batch(return_dtype=ID_TYPE)
    def __call__(self, paths: Series) -> list[dict]:
        with ThreadPoolExecutor(THREADS) as pool:
            return list(pool.map(lambda path: _identify(path, self.downloads), paths.to_pylist()))


def identify(files: list[str], downloads: str | None = None) -> DataFrame:
    """path, image_id, width, height, exif_fx, exif_fy, error for each file (URLs downloaded into
    `downloads`, when given)."""
    df = daft.from_pydict({"path": files})
    return df.select("path", IdentifyImages(downloads)(col("path")).alias("id")).select("path", col("id").unnest())


class KeySet:
    """A set of image keys (u64, `judge.hashing.image_keys`) as one sorted array: 8 bytes per image."""

    def __init__(self, keys: np.ndarray | None = None):
        self.keys = np.unique(keys) if keys is not None else np.zeros(0, dtype=np.uint64)

    def has(self, keys: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        return (self.keys[at] == keys) if len(self.keys) else np.zeros(len(keys), dtype=bool)

    def add(self, keys: np.ndarray) -> None:
        new = np.unique(keys[~self.has(keys)])
        self.keys = np.insert(self.keys, np.searchsorted(self.keys, new), new)
