"""`perception: models`: photos -> grounded objects with monocular depth, batched and cached.

Stages, each a Daft UDF:
1. `IdentifyImages` (CPU): content id and true size from the file's bytes and header.
2. `PrepareImages` (CPU, threads): decode once, resize to each model's fixed input (uint8).
   Decoding stays off the model workers, which receive full batches of ready tensors.
3. `EstimateDepth` / `DetectObjects` (GPU when there is one): normalize on the device,
   run the model, return small float16 depth maps / labelled boxes.
4. `ModelRecord` (CPU): object depth from the cached map -> the shared perception record.
A build runs stage 2–3 only for images missing from the perception cache (`cache.py`).
"""

from __future__ import annotations

import glob
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import daft
import numpy as np
import torch
from daft import DataFrame, DataType, Series, col
from PIL import Image, ImageOps

from forge.errors import ForgeError
from forge.perception.cache import cache_key, model_fingerprint
from forge.perception.flip import flip_views
from forge.perception.records import PERCEIVED_TYPE, Detection, image_record, measured_objects
from forge.spec.schema import DepthModel as DepthSpec
from forge.spec.schema import GroundingModel as GroundingSpec
from forge.spec.schema import ImagesSource, ModelsPerception, ObjectsSpec, UrlsSource

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
THREADS = max(1, min(16, os.cpu_count() or 1))

ID_TYPE = DataType.struct({"image_id": DataType.string(), "width": DataType.int64(),
                           "height": DataType.int64(), "error": DataType.string()})
# main depth model, optional second depth model, detector, and both main models on the mirrored image
TASKS = ("depth", "check", "grounding", "flip_depth", "flip_grounding")
DETECTION_TASKS = {"grounding": "detections", "flip_grounding": "flip_detections"}
PREPARED_TYPE = DataType.struct({"prepare_error": DataType.string(),
                                 **{f"{task}_input": DataType.tensor(DataType.uint8()) for task in TASKS}})
DEPTH_TYPE = DataType.struct({"kind": DataType.string(), "rows": DataType.int32(), "cols": DataType.int32(),
                              "depth": DataType.binary()})
DETECTIONS_TYPE = DataType.list(DataType.struct({
    "label": DataType.string(), "score": DataType.float64(), "x1": DataType.float64(), "y1": DataType.float64(),
    "x2": DataType.float64(), "y2": DataType.float64()}))


@dataclass(frozen=True)
class RunOptions:
    """How models run: `device` auto|cpu|cuda, optional batch size and worker count overriding the
    spec's, the cache switch."""

    device: str = "auto"
    batch_size: int | None = None
    use_cache: bool = True
    concurrency: int | None = None

    def wants_gpu(self) -> bool:
        return self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())


def list_images(source: ImagesSource | UrlsSource, base_dir: Path) -> list[str]:
    """Image files of a folder (recursively) or a glob, sorted so builds are reproducible; or the
    entries of a URL list in its order (paths in it resolved against the list's folder)."""
    if isinstance(source, UrlsSource):
        listing = base_dir / source.list
        entries = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines()]
        entries = [e for e in entries if e and not e.startswith("#")]
        if not entries:
            raise ForgeError(f"source.list {listing}: lists no images; put one URL or path per line")
        resolved = [e if e.startswith(("http://", "https://")) else str((listing.parent / e).resolve()) for e in entries]
        return list(dict.fromkeys(resolved))
    folder = base_dir / source.path
    paths = folder.rglob("*") if folder.is_dir() else map(Path, glob.glob(str(folder), recursive=True))
    files = sorted(str(p.resolve()) for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ForgeError(f"source.path {source.path!r}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {base_dir}")
    return files


def perception_label(perception: ModelsPerception) -> str:
    label = f"depth={perception.depth.model};grounding={perception.grounding.model}"
    return label + (f";depth_check={perception.depth_check.model}" if perception.depth_check is not None else "")


def depth_cache_key(spec: DepthSpec, mirrored: bool = False) -> str:
    from udfs.depth import STORED_LONG_SIDE

    return cache_key(model=model_fingerprint(spec.model), stored_long_side=STORED_LONG_SIDE, mirrored=mirrored)


def grounding_cache_key(spec: GroundingSpec, mirrored: bool = False) -> str:
    return cache_key(model=model_fingerprint(spec.model), vocabulary=spec.vocabulary, threshold=spec.threshold,
                     max_objects=spec.max_objects, mirrored=mirrored)


def task_cache_key(task: str, spec: DepthSpec | GroundingSpec) -> str:
    mirrored = task.startswith("flip_")
    return grounding_cache_key(spec, mirrored) if task in DETECTION_TASKS else depth_cache_key(spec, mirrored)


def _identify(path: str) -> dict:
    from udfs.images import check_size, content_id, oriented_size, read

    try:
        data = read(path)
        with Image.open(io.BytesIO(data)) as img:
            check_size(img)
            width, height = oriented_size(img)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return {"image_id": None, "width": None, "height": None, "error": f"cannot read image: {exc}"}
    if width < 1 or height < 1:
        return {"image_id": None, "width": None, "height": None, "error": f"image has no pixels ({width}x{height})"}
    return {"image_id": content_id(data), "width": width, "height": height, "error": None}


@daft.cls
class IdentifyImages:
    @daft.method.batch(return_dtype=ID_TYPE)
    def __call__(self, paths: Series) -> list[dict]:
        with ThreadPoolExecutor(THREADS) as pool:
            return list(pool.map(_identify, paths.to_pylist()))


@daft.cls
class PrepareImages:
    """Decodes each image once and resizes it to the fixed inputs of the models that will run."""

    def __init__(self, models: dict[str, str]):
        from udfs.depth import DepthInputs
        from udfs.grounding import GroundingInputs

        self.inputs = {task: (GroundingInputs(model) if task in DETECTION_TASKS else DepthInputs(model))
                       for task, model in models.items()}
        self.longest = max(max(m.height, m.width) for m in self.inputs.values())

    def _one(self, path: str) -> dict:
        from udfs.images import decode, read

        empty = {f"{task}_input": None for task in TASKS}
        try:
            image, _ = decode(read(path), self.longest)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            return {"prepare_error": f"cannot decode image: {exc}", **empty}
        mirrored = ImageOps.mirror(image) if any(task.startswith("flip_") for task in self.inputs) else None
        return {"prepare_error": None, **empty,
                **{f"{task}_input": inputs.prepare(mirrored if task.startswith("flip_") else image)
                   for task, inputs in self.inputs.items()}}

    @daft.method.batch(return_dtype=PREPARED_TYPE)
    def __call__(self, paths: Series) -> list[dict]:
        with ThreadPoolExecutor(THREADS) as pool:
            return list(pool.map(self._one, paths.to_pylist()))


def _on_decoded(run, inputs: Series, widths: Series, heights: Series) -> list:
    """Run a model on the rows that decoded; rows that did not (null input) get null output."""
    items = inputs.to_pylist()
    valid = [i for i, item in enumerate(items) if item is not None]
    out: list = [None] * len(items)
    if valid:
        sizes = list(zip(widths.to_pylist(), heights.to_pylist()))
        results = run(np.stack([items[i] for i in valid]), [sizes[i] for i in valid])
        for i, result in zip(valid, results):
            out[i] = result
    return out


def depth_udf(spec: DepthSpec, options: RunOptions):
    """A class UDF estimating depth; one model per worker, batches of `batch_size` images."""

    @daft.cls(gpus=1 if options.wants_gpu() else 0, max_concurrency=options.concurrency or spec.concurrency)
    class EstimateDepth:
        def __init__(self) -> None:
            from udfs.depth import DepthModel
            from udfs.loading import pick_device

            self.model = DepthModel(spec.model, pick_device(options.device))

        @daft.method.batch(return_dtype=DEPTH_TYPE, batch_size=options.batch_size or spec.batch_size)
        def __call__(self, inputs: Series, widths: Series, heights: Series) -> list[dict | None]:
            def run(batch: np.ndarray, sizes: list[tuple[int, int]]) -> list[dict]:
                return [{"kind": self.model.kind, "rows": m.shape[0], "cols": m.shape[1], "depth": m.tobytes()}
                        for m in self.model(batch, sizes)]

            return _on_decoded(run, inputs, widths, heights)

    return EstimateDepth()


def grounding_udf(spec: GroundingSpec, options: RunOptions):
    """A class UDF detecting the spec's vocabulary; one model per worker."""

    @daft.cls(gpus=1 if options.wants_gpu() else 0, max_concurrency=options.concurrency or spec.concurrency)
    class DetectObjects:
        def __init__(self) -> None:
            from udfs.grounding import GroundingModel
            from udfs.loading import pick_device

            self.model = GroundingModel(spec.model, pick_device(options.device), spec.vocabulary, spec.threshold,
                                        spec.max_objects)

        @daft.method.batch(return_dtype=DETECTIONS_TYPE, batch_size=options.batch_size or spec.batch_size)
        def __call__(self, inputs: Series, widths: Series, heights: Series) -> list[list[dict] | None]:
            def run(batch: np.ndarray, sizes: list[tuple[int, int]]) -> list[list[dict]]:
                return [[{"label": o["label"], "score": o["score"], "x1": o["box"][0], "y1": o["box"][1],
                          "x2": o["box"][2], "y2": o["box"][3]} for o in objects] for objects in self.model(batch, sizes)]

            return _on_decoded(run, inputs, widths, heights)

    return DetectObjects()


def decode_depth_map(data: bytes, rows: int, cols: int) -> np.ndarray:
    return np.frombuffer(data, dtype=np.float16).reshape(rows, cols).astype(np.float32)


@daft.cls
class ModelRecord:
    """Cached model outputs of one image -> the shared perception record, with object depth."""

    def __init__(self, objects: ObjectsSpec, label: str):
        self.objects, self.label = objects, label

    @daft.method(return_dtype=PERCEIVED_TYPE)
    def __call__(self, image_id: str, uri: str, width: int, height: int, kind: str, rows: int, cols: int,
                 depth: bytes, detections: list, check_rows: int | None, check_cols: int | None,
                 check_depth: bytes | None, flip_rows: int | None, flip_cols: int | None, flip_depth: bytes | None,
                 flip_detections: list | None) -> dict:
        def box(d: dict) -> tuple[float, float, float, float]:
            return d["x1"], d["y1"], d["x2"], d["y2"]

        percentile = self.objects.depth_percentile
        depth_map = decode_depth_map(depth, rows, cols)
        check_map = decode_depth_map(check_depth, check_rows, check_cols) if check_depth is not None else None
        flips = None
        if flip_depth is not None and flip_detections is not None:
            flips = flip_views([(d["label"], box(d)) for d in detections],
                               [(d["label"], box(d)) for d in flip_detections],
                               decode_depth_map(flip_depth, flip_rows, flip_cols), percentile)
        found = [Detection(d["label"], d["score"], box(d)) for d in detections]
        objects = measured_objects(found, depth_map, (width, height), percentile, self.objects.depth_from, check_map, flips)
        return image_record(image_id, uri, width, height, kind, self.label, objects)


def identify(files: list[str]) -> DataFrame:
    """path, image_id, width, height, error for each file."""
    df = daft.from_pydict({"path": files})
    return df.select("path", IdentifyImages()(col("path")).alias("id")).select("path", col("id").unnest())


def task_models(perception: ModelsPerception) -> dict[str, DepthSpec | GroundingSpec]:
    """The configured model of each task (the check model only when the spec has one)."""
    tasks: dict[str, DepthSpec | GroundingSpec] = {"depth": perception.depth, "grounding": perception.grounding}
    if perception.depth_check is not None:
        tasks["check"] = perception.depth_check
    if perception.flip_check:
        tasks["flip_depth"] = perception.depth
        tasks["flip_grounding"] = perception.grounding
    return tasks


def depth_columns(task: str) -> list[str]:
    """Output columns of a depth task: kind, rows, cols, depth, prefixed `check_` for the check model."""
    prefix = "" if task == "depth" else f"{task}_"
    return [prefix + c for c in ("kind", "rows", "cols", "depth")]


def run_models(images: DataFrame, perception: ModelsPerception, options: RunOptions, tasks: set[str]) -> DataFrame:
    """Prepare and run the models of `tasks` on identified images (path, image_id, width, height).

    Rows that fail to decode keep their `prepare_error` and get null model outputs.
    """
    models = {task: spec for task, spec in task_models(perception).items() if task in tasks}
    prepare = PrepareImages({task: spec.model for task, spec in models.items()})
    df = images.with_column("prepared", prepare(col("path"))).select(
        "path", "image_id", "width", "height", col("prepared").unnest())
    keep = ["path", "image_id", "width", "height", "prepare_error"]
    for task, spec in models.items():
        inputs = (col(f"{task}_input"), col("width"), col("height"))
        if task in DETECTION_TASKS:
            df = df.with_column(DETECTION_TASKS[task], grounding_udf(spec, options)(*inputs))
            keep.append(DETECTION_TASKS[task])
            continue
        out = depth_udf(spec, options)(*inputs)
        names = depth_columns(task)
        df = df.select(*df.column_names, out.alias("depth_out")).select(
            *df.column_names, *[col("depth_out").get(field).alias(name) for field, name in zip(("kind", "rows", "cols", "depth"), names)])
        keep += names
    return df.select(*keep)


def records(joined: DataFrame, perception: ModelsPerception, objects: ObjectsSpec) -> DataFrame:
    """Perception records from frames holding path, image_id, width, height, kind, rows, cols, depth, detections."""
    record = ModelRecord(objects, perception_label(perception))
    absent_map = [daft.lit(None).cast("int32"), daft.lit(None).cast("int32"), daft.lit(None).cast("binary")]
    check = [col(c) for c in depth_columns("check")[1:]] if perception.depth_check is not None else absent_map
    flip = [col(c) for c in depth_columns("flip_depth")[1:]] + [col("flip_detections")] if perception.flip_check else (
        absent_map + [daft.lit(None).cast(DETECTIONS_TYPE)])
    return joined.select(record(col("image_id"), col("path"), col("width"), col("height"), col("kind"), col("rows"),
                                col("cols"), col("depth"), col("detections"), *check, *flip).alias("perceived")).select(
        col("perceived").unnest())


def cold_plan(files: list[str], perception: ModelsPerception, objects: ObjectsSpec, options: RunOptions) -> DataFrame:
    """Every image through every model, as if nothing were cached (what `forge explain` shows)."""
    images = identify(files)
    ok = images.where(col("error").is_null()).exclude("error")
    outputs = run_models(ok, perception, options, set(task_models(perception))).where(col("prepare_error").is_null())
    return records(outputs, perception, objects)
