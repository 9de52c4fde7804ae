"""`perception: models`: photos -> grounded objects with monocular depth (and masks), batched.

Stages, each a Daft UDF, after the images are identified (`forge.sources.identity`):
1. `PrepareImages` (CPU, threads): decode once, resize to each model's fixed input (uint8).
   Decoding stays off the model workers, which receive full batches of ready tensors.
2. `EstimateDepth` / `DetectObjects` / `SegmentObjects` (GPU when there is one): normalize on
   the device, run the model, return small float16 depth maps / labelled boxes / RLE masks.
3. `ModelRecord` (CPU): object depth from the cached map (over each mask) -> the perception record.
The tasks (which model, which cache table and key) are listed once, in `tasks.py`; the perceiver
(`model_perceiver.py`) runs stages 1-2 only for images missing from the perception cache.
"""

from __future__ import annotations

import importlib
import threading
from concurrent.futures import ThreadPoolExecutor

import daft
import numpy as np
from daft import DataFrame, DataType, Series, col
from PIL import ImageOps

from forge.perception.cache import DETECTION_TYPE, SCHEMAS
from forge.perception.annotations import geometry
from forge.perception.camera import Camera, choose
from forge.perception.flip import flip_views
from forge.perception.gravity import Gravity
from forge.perception.model_config import makes_masks
from forge.perception.records import PERCEIVED_TYPE, Detection, image_record, measured_objects
from forge.perception.tasks import (TASKS, ModelSpec, RunOptions, Task, made_with, masks_task, model_tasks, perception_label,
                                    tasks_of)
from forge.sources.decoding import UNREADABLE, decode, reason
from forge.sources.identity import THREADS
from forge.sources.reading import Downloads
from forge.spec.schema import ModelsPerception, ObjectsSpec

PREPARED_TYPE = DataType.struct({"prepare_error": DataType.string(),
                                 **{f"{name}_input": DataType.tensor(DataType.uint8()) for name in TASKS}})
DETECTIONS_TYPE = DataType.list(DataType.from_arrow_type(DETECTION_TYPE))
MASKS_TYPE = DataType.list(DataType.string())
DETECTOR_FOUND = {"annotation_id": None, "crowd": None, "depiction": None, "truncated": None, "mask": None}  # no annotation


# per model kind: its wrapper module, CPU-side input preparation and model class; a task's kind is its
# output, except a grounder that segments what it finds (SAM 3), which has its own wrapper
KINDS = {"depth": ("udfs.depth", "DepthInputs", "DepthModel"),
         "detections": ("udfs.grounding", "GroundingInputs", "GroundingModel"),
         "segmenting grounder": ("udfs.sam3", "Sam3Inputs", "Sam3Grounder"),
         "masks": ("udfs.segmentation", "SegmentationInputs", "SegmentationModel")}


def _wrapper(task: Task, model: str, part: int):
    """Part 1 (input preparation) or 2 (the model class) of a task's model wrapper."""
    kind = "segmenting grounder" if task.output == "detections" and makes_masks(model) else task.output
    return getattr(importlib.import_module(KINDS[kind][0]), KINDS[kind][part])


def _inputs(task: Task, model: str):
    """The input preparation of a task's model (processor config only, no weights)."""
    return _wrapper(task, model, 1)(model)


def stored_fields(task: Task) -> list[str]:
    """A task's output fields, as its cache table stores them (`Task.columns` names them in a frame)."""
    return [c for c in SCHEMAS[task.table].names if c not in ("image_id", "key")]


def output_type(tasks: list[Task]) -> DataType:
    """What a model's UDF returns: one struct with the stored fields of every task it makes."""
    return DataType.struct({field: DataType.from_arrow_type(SCHEMAS[task.table].field(field).type)
                            for task in tasks for field in stored_fields(task)})


@daft.cls
class PrepareImages:
    """Decodes each image once and resizes it to the fixed inputs of the models that will run."""

    def __init__(self, models: dict[str, str], downloads: str | None = None):
        self.inputs = {name: _inputs(TASKS[name], model) for name, model in models.items()}
        self.downloads = Downloads(downloads)
        self.longest = max(max(m.height, m.width) for m in self.inputs.values())

    def _one(self, path: str) -> dict:
        empty = {f"{name}_input": None for name in TASKS}
        try:
            image, _ = decode(self.downloads.read(path), self.longest)
        except UNREADABLE as exc:
            return {"prepare_error": f"cannot decode image: {reason(exc)}", **empty}
        mirrored = ImageOps.mirror(image) if any(TASKS[name].mirrored for name in self.inputs) else None
        return {"prepare_error": None, **empty,
                **{f"{name}_input": inputs.prepare(mirrored if TASKS[name].mirrored else image)
                   for name, inputs in self.inputs.items()}}

    @daft.method.batch(return_dtype=PREPARED_TYPE)
    def __call__(self, paths: Series) -> list[dict]:
        with ThreadPoolExecutor(THREADS) as pool:
            return list(pool.map(self._one, paths.to_pylist()))


def _on_decoded(run, inputs: Series, widths: Series, heights: Series, *extra: Series) -> list:
    """Run a model on the rows that decoded; rows that did not (null input) get null output.
    `extra` columns (a segmenter's boxes) are passed along for the same rows."""
    items = inputs.to_pylist()
    valid = [i for i, item in enumerate(items) if item is not None]
    out: list = [None] * len(items)
    if valid:
        sizes = list(zip(widths.to_pylist(), heights.to_pylist()))
        more = [[column[i] for i in valid] for column in (e.to_pylist() for e in extra)]
        results = run(np.stack([items[i] for i in valid]), [sizes[i] for i in valid], *more)
        for i, result in zip(valid, results):
            out[i] = result
    return out


def _load_depth(task: Task, spec: ModelSpec, device):
    model = _wrapper(task, spec.model, 2)(spec.model, device)
    return lambda batch, sizes: [{"kind": model.kind, "rows": m.shape[0], "cols": m.shape[1], "depth": m.tobytes(),
                                  "fov": fov} for m, fov in zip(*model(batch, sizes))]


def _load_grounding(task: Task, spec: ModelSpec, device):
    """Boxes per image, and the masks of a grounder that makes them (aligned with its detections)."""
    model = _wrapper(task, spec.model, 2)(spec.model, device, spec.vocabulary, spec.threshold, spec.max_objects)
    return lambda batch, sizes: [{"detections": [{"label": o["label"], "score": o["score"], "x1": o["box"][0],
                                                  "y1": o["box"][1], "x2": o["box"][2], "y2": o["box"][3], **DETECTOR_FOUND}
                                                 for o in found],
                                  "masks": [o.get("mask") for o in found]} for found in model(batch, sizes)]


def _load_segmentation(task: Task, spec: ModelSpec, device):
    model = _wrapper(task, spec.model, 2)(spec.model, device, spec.min_mask_fraction)

    def run(batch: np.ndarray, sizes: list[tuple[int, int]], detections: list) -> list:
        boxes = [np.array([[d["x1"], d["y1"], d["x2"], d["y2"]] for d in found or []], dtype=np.float64).reshape(-1, 4)
                 for found in detections]
        return [{"masks": masks} for masks in model(batch, boxes, sizes)]

    return run


# per task output: the UDF's name (as plans and Ray's dashboard show it) and its model loader (a callable
# from prepared batches to a dict of cache fields per image)
WORKERS = {"depth": ("EstimateDepth", _load_depth), "detections": ("DetectObjects", _load_grounding),
           "masks": ("SegmentObjects", _load_segmentation)}


_LOADED: dict[tuple[str, ...], object] = {}  # (task output, model spec, weights, device) -> the loaded model's runner
_LOADING = threading.Lock()
KEEP_LOADED = 6  # models kept per process: every task of a build, with room for a second build's


def _loaded(task: Task, spec: ModelSpec, device) -> object:
    """A task's model, loaded once per process: the perceiver runs one Daft plan per window, and each
    plan makes its UDF instances anew; without this every window would load every model again."""
    from forge.perception.cache import model_fingerprint

    settings = spec.model_dump_json(exclude={"batch_size", "concurrency"})  # how batches are made changes no weight
    key = (task.output, settings, model_fingerprint(spec.model), str(device))
    with _LOADING:
        if key not in _LOADED:
            while len(_LOADED) >= KEEP_LOADED:
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[key] = WORKERS[task.output][1](task, spec, device)
        return _LOADED[key]


def _model_udf(task: Task, spec: ModelSpec, options: RunOptions, made: list[Task]):
    """A class UDF running `task`'s model: one model per worker (one GPU each when there are GPUs),
    batches of `batch_size` prepared images; it returns the fields of `task` and of the tasks `made` in
    its pass."""
    from udfs.loading import pick_device

    name = WORKERS[task.output][0]
    fields = [field for t in (task, *made) for field in stored_fields(t)]
    return_type = output_type([task, *made])

    def __init__(self) -> None:
        self.run = _loaded(task, spec, pick_device(options.device))

    def __call__(self, inputs: Series, widths: Series, heights: Series, *prompts: Series) -> list:
        def run(*args) -> list[dict]:
            return [{field: out[field] for field in fields} for out in self.run(*args)]

        return _on_decoded(run, inputs, widths, heights, *prompts)

    __call__.__qualname__ = f"{name}.__call__"
    batch = daft.method.batch(return_dtype=return_type, batch_size=options.batch_size or spec.batch_size)
    worker = type(name, (), {"__init__": __init__, "__call__": batch(__call__), "__module__": __name__})
    resources = daft.cls(gpus=1 if options.wants_gpu() else 0, max_concurrency=options.concurrency or spec.concurrency)
    return resources(worker)()


def decode_depth_map(data: bytes, rows: int, cols: int) -> np.ndarray:
    return np.frombuffer(data, dtype=np.float16).reshape(rows, cols).astype(np.float32)


def camera_for(objects: ObjectsSpec, width: int, height: int, known: dict[str, Camera | None],
               fov: float | None) -> tuple[Camera, float]:
    """The image's camera, first found in `objects.camera` among the `known` ones (annotation, exif) and the
    depth model's predicted field of view; and the factor that turns the model's metric depth into depth
    under that camera (1 unless the model predicted its own field of view and another camera won)."""
    predicted = Camera.from_fov(width, height, fov, "model") if fov is not None else None
    camera = choose(tuple(objects.camera), {**known, "model": predicted}, width, height, objects.horizontal_fov_deg)
    return camera, (camera.fx / predicted.fx if predicted is not None and camera is not predicted else 1.0)


@daft.cls
class ModelRecord:
    """Cached model outputs of one image -> the shared perception record, with object depth and the
    image's camera: from the annotations' or EXIF's focal length, or the depth model's field of view
    (`objects.camera` says which first). A model that predicts the field of view made its metric depth
    with it; under another camera the depth is rescaled to that camera's focal length, as the model
    (DepthPro) would have made it had it been given that focal length. Objects from annotations keep
    their own masks (a segmenter's fill the others) and what the annotation says of them; an annotated
    gravity is used as given."""

    def __init__(self, objects: ObjectsSpec, label: str):
        self.objects, self.label = objects, label

    @daft.method(return_dtype=PERCEIVED_TYPE)
    def __call__(self, image_id: str, uri: str, meta: str | None, width: int, height: int, exif_fx: float | None,
                 exif_fy: float | None, annotated_width: int | None, annotated_height: int | None, extras: str | None,
                 not_exhaustive: list | None, kind: str, rows: int, cols: int, depth: bytes, fov: float | None,
                 detections: list, check_rows: int | None, check_cols: int | None,
                 check_depth: bytes | None, flip_rows: int | None, flip_cols: int | None, flip_depth: bytes | None,
                 flip_detections: list | None, masks: list | None) -> dict:
        def box(d: dict) -> tuple[float, float, float, float]:
            return d["x1"], d["y1"], d["x2"], d["y2"]

        percentile = self.objects.depth_percentile
        exif = Camera.centred(width, height, exif_fx, exif_fy, "exif") if exif_fx else None
        given = geometry(extras, annotated_width or width, annotated_height or height)
        scale = width / (annotated_width or width)  # an annotation's camera is in pixels of the annotated size
        annotated = Camera(*(v * scale for v in given["camera"]), "annotation") if given["camera"] is not None else None
        gravity = Gravity(tuple(given["up"]), given["camera_height"], "annotation") if given["up"] is not None else None
        camera, depth_scale = camera_for(self.objects, width, height, {"annotation": annotated, "exif": exif}, fov)
        depth_map = decode_depth_map(depth, rows, cols) * np.float32(depth_scale)
        check_map = decode_depth_map(check_depth, check_rows, check_cols) if check_depth is not None else None
        flips = None
        if flip_depth is not None and flip_detections is not None:
            flips = flip_views([(d["label"], box(d)) for d in detections],
                               [(d["label"], box(d)) for d in flip_detections],
                               decode_depth_map(flip_depth, flip_rows, flip_cols), percentile)
        masks = masks if masks is not None and len(masks) == len(detections) else [None] * len(detections)
        found = [Detection(d["label"], d["score"], box(d), d["mask"] or m, d["annotation_id"], d["crowd"], d["depiction"],
                           d["truncated"]) for d, m in zip(detections, masks)]
        objects, record_geometry = measured_objects(found, depth_map, (width, height), percentile, self.objects.depth_from,
                                                    camera, gravity, kind == "metric", check_map, flips)
        return image_record(image_id, uri, width, height, kind, self.label, objects, record_geometry, meta,
                            not_exhaustive=not_exhaustive)


def run_models(images: DataFrame, perception: ModelsPerception, options: RunOptions, names: set[str],
               downloads: str | None = None) -> DataFrame:
    """Prepare and run the models of the tasks `names` on identified images (path, image_id, width,
    height; plus `detections` when segmentation runs without grounding: the cached boxes).

    Tasks run in `TASKS` order, so boxes found here prompt the segmenter in the same pass. Rows that
    fail to decode keep their `prepare_error` and get null model outputs.
    """
    models = {name: pair for name, pair in model_tasks(perception).items() if name in names}
    prepare = PrepareImages({name: spec.model for name, (_, spec) in models.items()}, downloads)
    carried = [c for c in ("detections",) if c in images.column_names and "grounding" not in names]
    df = images.with_column("prepared", prepare(col("path"))).select(
        "path", "image_id", "width", "height", *carried, col("prepared").unnest())
    keep = ["path", "image_id", "width", "height", "prepare_error"]
    for name, (task, spec) in models.items():
        inputs = [col(f"{name}_input"), col("width"), col("height")]
        if task.prompted_by is not None:
            inputs.append(col(TASKS[task.prompted_by].columns()[0]))
        made = made_with(name, names)
        out = f"{name}_out"
        columns = {column: col(out).get(field) for t in (task, *made) for field, column in zip(stored_fields(t), t.columns())}
        df = df.with_column(out, _model_udf(task, spec, options, made)(*inputs)).with_columns(columns).exclude(out)
        keep += list(columns)
    return df.select(*keep)


def records(joined: DataFrame, perception: ModelsPerception, objects: ObjectsSpec) -> DataFrame:
    """Perception records from frames holding path, image_id, width, height, exif_fx, exif_fy, meta (the
    source's carried fields, JSON), what an annotation says of the image (annotated_width,
    annotated_height, extras, not_exhaustive; null without one) and every configured task's output
    columns (`Task.columns`)."""
    record = ModelRecord(objects, perception_label(perception))
    configured = tasks_of(perception)

    def outputs(name: str, dtypes: list) -> list:
        if name in configured:
            columns = TASKS[name].columns()
            return [col(c) for c in (columns[1:4] if TASKS[name].output == "depth" else columns)]  # a map: rows, cols, depth
        return [daft.lit(None).cast(t) for t in dtypes]

    absent_map = [DataType.int32(), DataType.int32(), DataType.binary()]
    args = [col("image_id"), col("path"), col("meta"), col("width"), col("height"), col("exif_fx"), col("exif_fy"),
            col("annotated_width"), col("annotated_height"), col("extras"), col("not_exhaustive"), col("kind"), col("rows"), col("cols"), col("depth"), col("fov"), col("detections"),
            *outputs("check", absent_map), *outputs("flip_depth", absent_map),
            *outputs("flip_grounding", [DETECTIONS_TYPE]), *outputs(masks_task(perception), [MASKS_TYPE])]
    return joined.select(record(*args).alias("perceived")).select(col("perceived").unnest())
