"""`perception: models`: photos -> grounding boxes + monocular depth, in batches inside one class UDF.

The UDF class is built per plan so its GPU request and batch size come from the spec; each
worker loads both models once in `__init__`.
"""

from __future__ import annotations

import glob
import io
from pathlib import Path

import daft
import torch
from daft import DataFrame, Series, col
from PIL import Image, ImageOps

from forge.errors import ForgeError
from forge.perception.depth_stats import object_depth
from forge.perception.records import PERCEIVED_TYPE, content_id, failed
from forge.spec.schema import ImagesSource, ModelsPerception

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def list_images(source: ImagesSource, base_dir: Path) -> list[str]:
    """Image files of a folder (recursively) or a glob, sorted so builds are reproducible."""
    folder = base_dir / source.path
    paths = folder.rglob("*") if folder.is_dir() else map(Path, glob.glob(str(folder), recursive=True))
    files = sorted(str(p.resolve()) for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ForgeError(f"source.path {source.path!r}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {base_dir}")
    return files


def perception_label(perception: ModelsPerception) -> str:
    return f"depth={perception.depth.model};grounding={perception.grounding.model}"


def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def model_udf(perception: ModelsPerception, depth_percentile: float, device: str):
    """A Daft class UDF running grounding and depth on batches of image paths."""
    from udfs.depth import DepthModel
    from udfs.grounding import GroundingModel
    from udfs.loading import pick_device

    wants_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    batch = min(perception.depth.batch_size, perception.grounding.batch_size)
    label = perception_label(perception)

    @daft.cls(gpus=1 if wants_gpu else 0, max_concurrency=1)
    class PerceiveWithModels:
        def __init__(self) -> None:
            target = pick_device(device)
            g = perception.grounding
            self.depth = DepthModel(perception.depth.model, target)
            self.grounding = GroundingModel(g.model, target, g.vocabulary, g.threshold, g.max_objects)

        @daft.method.batch(return_dtype=PERCEIVED_TYPE, batch_size=batch)
        def __call__(self, paths: Series) -> list[dict]:
            records: list[dict | None] = []
            images, ids = [], []
            for path in paths.to_pylist():
                try:
                    data = Path(path).read_bytes()
                    images.append(_decode(data))
                    ids.append((path, content_id(data)))
                    records.append(None)
                except (OSError, ValueError, Image.DecompressionBombError) as exc:
                    records.append(failed(path, label, f"cannot read image: {exc}"))
            detections = self.grounding(images) if images else []
            depths = self.depth(images) if images else []
            decoded = iter(zip(ids, images, detections, depths))
            out = []
            for record in records:
                if record is not None:
                    out.append(record)
                    continue
                (path, image_id), image, found, depth = next(decoded)
                objects = [{"idx": i, "label": o["label"], "score": o["score"], "x1": o["box"][0], "y1": o["box"][1],
                            "x2": o["box"][2], "y2": o["box"][3], "depth": object_depth(depth, o["box"], depth_percentile)}
                           for i, o in enumerate(found)]
                out.append({"image_id": image_id, "image_uri": path, "width": image.width, "height": image.height,
                            "depth_kind": self.depth.kind, "perception": label, "error": None, "objects": objects})
            return out

    return PerceiveWithModels()


def perceive_models(source: ImagesSource, perception: ModelsPerception, base_dir: Path, depth_percentile: float,
                    limit: int | None, device: str = "auto") -> DataFrame:
    files = list_images(source, base_dir)[:limit]
    udf = model_udf(perception, depth_percentile, device)
    df = daft.from_pydict({"path": files})
    return df.select(udf(col("path")).alias("perceived")).select(col("perceived").unnest())
