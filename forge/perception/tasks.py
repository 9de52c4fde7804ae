"""The perception tasks a model spec can run, in one table: what each produces, from which model,
where its output is cached and under which key.

A task's cache key is a hash of everything its output depends on (model fingerprint and
parameters, and for segmentation the detections it was prompted with), so a changed vocabulary
re-runs grounding and segmentation but not depth, and a changed depth model re-runs depth only.
Grounding may also come from an annotations source (`grounding: annotations`): its detections are
the dataset's boxes, cached under the annotation files' fingerprint, and no model runs for it. A SAM 3
grounder makes the masks of what it finds in the same pass: its masks are a task of their own (cached
where a segmenter's go, keyed by the grounding key) made by the grounding task's model.
This module imports no model code (no torch): synthetic and annotation builds never load it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Union

from forge.perception.cache import DEPTH_TABLE, DETECTIONS_TABLE, MASKS_TABLE, cache_key, model_fingerprint
from forge.perception.model_config import makes_masks
from forge.spec.schema import AnnotationGrounding, DepthModel, GroundingModel, ModelsPerception, SegmentationModel

STORED_LONG_SIDE = 256  # depth maps are stored at most this long: enough for per-object statistics
DEPTH_OUTPUTS = ("kind", "rows", "cols", "depth", "fov")  # a depth task's output columns, as cached

ModelSpec = Union[DepthModel, GroundingModel, SegmentationModel]
TaskSpec = Union[ModelSpec, AnnotationGrounding]  # what a task runs: a model, or the boxes of an annotations source
Output = Literal["depth", "detections", "masks"]


@dataclass(frozen=True)
class RunOptions:
    """How models run: `device` auto|cpu|cuda, optional batch size and worker count overriding the
    spec's, the cache switch."""

    device: str = "auto"
    batch_size: int | None = None
    use_cache: bool = True
    concurrency: int | None = None
    offline: bool = False  # never download a model (as HF_HUB_OFFLINE=1)

    def wants_gpu(self) -> bool:
        if self.device != "auto":
            return self.device == "cuda"
        import torch

        return torch.cuda.is_available()


@dataclass(frozen=True)
class Task:
    """One model run per image: `output` says what it makes (and so its cache table and columns)."""

    name: str
    title: str  # in progress bars and the build summary
    output: Output
    pick: Callable[[ModelsPerception], TaskSpec | None]  # the task's model in a spec (None: not configured)
    mirrored: bool = False  # runs on the horizontally mirrored image
    prompted_by: str | None = None  # the task whose detections prompt it (runs after that task)
    made_by: str | None = None  # the task whose model makes this output in its own pass (no model of its own)

    @property
    def table(self) -> str:
        return {"depth": DEPTH_TABLE, "detections": DETECTIONS_TABLE, "masks": MASKS_TABLE}[self.output]

    def columns(self) -> list[str]:
        """The task's output columns in a perception frame, prefixed by its name except for the main tasks."""
        if self.output == "depth":
            prefix = "" if self.name == "depth" else f"{self.name}_"
            return [prefix + c for c in DEPTH_OUTPUTS]
        if self.output == "detections":
            return ["detections" if self.name == "grounding" else f"{self.name}_detections"]
        return ["masks"]

    def cache_key(self, perception: ModelsPerception) -> str:
        spec = self.pick(perception)
        assert spec is not None, self.name
        if isinstance(spec, AnnotationGrounding):
            return cache_key(annotations=spec.fingerprint, mirrored=self.mirrored)
        if self.made_by is not None:
            return cache_key(output=self.output, made_by=TASKS[self.made_by].cache_key(perception))
        if isinstance(spec, GroundingModel):
            return cache_key(model=model_fingerprint(spec.model), vocabulary=spec.vocabulary, threshold=spec.threshold,
                             max_objects=spec.max_objects, mirrored=self.mirrored)
        if isinstance(spec, SegmentationModel):
            assert self.prompted_by is not None
            return cache_key(model=model_fingerprint(spec.model), min_mask_fraction=spec.min_mask_fraction,
                             boxes=TASKS[self.prompted_by].cache_key(perception))
        return depth_key(spec.model, self.mirrored)


def depth_key(model: str, mirrored: bool = False) -> str:
    """Cache key of a depth map from `model` (what `forge show --depth` looks up)."""
    return cache_key(model=model_fingerprint(model), stored_long_side=STORED_LONG_SIDE, mirrored=mirrored)


def _flip(perception: ModelsPerception, spec: ModelSpec) -> ModelSpec | None:
    return spec if perception.flip_check else None


def _masks_of(grounding: GroundingModel | AnnotationGrounding) -> GroundingModel | None:
    return grounding if isinstance(grounding, GroundingModel) and makes_masks(grounding.model) else None


TASKS: dict[str, Task] = {task.name: task for task in (
    Task("depth", "depth", "depth", lambda p: p.depth),
    Task("check", "check depth", "depth", lambda p: p.depth_check),
    Task("grounding", "detections", "detections", lambda p: p.grounding),
    Task("flip_depth", "mirrored depth", "depth", lambda p: _flip(p, p.depth), mirrored=True),
    Task("flip_grounding", "mirrored detections", "detections", lambda p: _flip(p, p.grounding), mirrored=True),
    Task("segmentation", "masks", "masks", lambda p: p.segmentation, prompted_by="grounding"),
    Task("grounding_masks", "masks", "masks", lambda p: _masks_of(p.grounding), made_by="grounding"),
)}


def tasks_of(perception: ModelsPerception) -> dict[str, tuple[Task, TaskSpec]]:
    """The tasks a spec configures, in run order, with their models (or annotations)."""
    out = {}
    for name, task in TASKS.items():
        spec = task.pick(perception)
        if spec is not None:
            out[name] = (task, spec)
    return out


def model_tasks(perception: ModelsPerception) -> dict[str, tuple[Task, ModelSpec]]:
    """The tasks a model runs for (grounding from annotations needs none; masks made in the grounder's pass
    need no model of their own)."""
    return {name: pair for name, pair in tasks_of(perception).items()
            if not isinstance(pair[1], AnnotationGrounding) and pair[0].made_by is None}


def masks_task(perception: ModelsPerception) -> str:
    """The task whose masks a record reads: the segmenter's, or the grounder's own (SAM 3); the segmenter's
    name when neither is configured."""
    return next((name for name, (task, _) in tasks_of(perception).items() if task.output == "masks"), "segmentation")


def made_with(name: str, names: set[str] | tuple[str, ...]) -> list[Task]:
    """The tasks among `names` that task `name`'s model makes in its pass."""
    return [task for task in TASKS.values() if task.made_by == name and task.name in names]


def together(names: tuple[str, ...], configured: dict[str, object]) -> tuple[str, ...]:
    """`names` with the tasks that run in the same pass: an output made by another task's model needs that
    model run, and that model's run makes it (so its cache is filled whichever of the two was missing)."""
    wanted = set(names)
    for name in names:
        maker = TASKS[name].made_by
        wanted |= {maker} if maker is not None else set()
    wanted |= {task.name for task in TASKS.values() if task.made_by in wanted and task.name in configured}
    return tuple(name for name in TASKS if name in wanted)


def who_makes_what(perception: ModelsPerception) -> str:
    """Which model makes each output, as `forge explain` says it."""
    parts = []
    for name, (task, spec) in tasks_of(perception).items():
        source = "the annotations" if isinstance(spec, AnnotationGrounding) else spec.model
        if task.made_by is not None:
            source += f", in the {TASKS[task.made_by].title} pass"
        elif task.prompted_by is not None:
            source += f", prompted by the {TASKS[task.prompted_by].title}"
        parts.append(f"{task.title}: {source}")
    return "; ".join(parts)


def perception_label(perception: ModelsPerception) -> str:
    """What perceived a record, as QA rows carry it: the model of each configured task."""
    grounding = perception.grounding
    label = f"depth={perception.depth.model};grounding=" + (
        f"annotations:{grounding.fingerprint}" if isinstance(grounding, AnnotationGrounding) else grounding.model)
    if perception.depth_check is not None:
        label += f";depth_check={perception.depth_check.model}"
    if perception.segmentation is not None:
        label += f";segmentation={perception.segmentation.model}"
    return label
