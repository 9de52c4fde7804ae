"""The perceiver of a spec's source: one object that `forge explain` shows and `forge build` runs.

A perceiver yields perception records for a range of its items (scenes, annotated images,
photos), so a build can stage them a chunk at a time; `plan` is the whole Daft plan. A source
of records made elsewhere (`source: records`) needs no perceiver: the build reads the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from daft import DataFrame

from forge.errors import ForgeError
from forge.perception.annotations import perceive_annotations, read_instances
from forge.perception.model_perceiver import ModelPerceiver
from forge.perception.synthetic import perceive_synthetic
from forge.perception.tasks import RunOptions
from forge.progress import ProgressFactory, StageTimes, no_progress
from forge.spec.load import LoadedSpec
from forge.spec.schema import AnnotationsSource, SyntheticSource
from forge.store import Store


class Perceiver(Protocol):
    label: str  # what the progress bar says

    @property
    def items(self) -> int:
        """Images it yields records for (after --limit); known after `prepare`."""

    def prepare(self, store: Store, folder: Path, window: int, progress: ProgressFactory = no_progress,
                stages: StageTimes | None = None) -> None:
        """Work needed before records can be read (models: identify and run them `window` images at a
        time, caching into `store` and keeping what a rerun may reuse in `folder`)."""

    def records(self, start: int, stop: int) -> DataFrame:
        """Perception records of items [start, stop), a lazy Daft frame."""

    def plans(self) -> list[tuple[str, DataFrame]]:
        """The plans `records` and `prepare` run, named, for `forge explain`."""


class SyntheticPerceiver:
    def __init__(self, loaded: LoadedSpec, seed: int, limit: int | None):
        self.source = loaded.spec.source
        assert isinstance(self.source, SyntheticSource)
        self.seed, self.objects = seed, loaded.spec.objects
        self.items = self.source.images if limit is None else min(limit, self.source.images)
        self.label = "perceiving (synthetic)"

    def prepare(self, store: Store, folder: Path, window: int, progress: ProgressFactory = no_progress,
                stages: StageTimes | None = None) -> None:
        pass

    def records(self, start: int, stop: int) -> DataFrame:
        return perceive_synthetic(self.source, self.seed, self.objects, start, stop)

    def plans(self) -> list[tuple[str, DataFrame]]:
        return [("records", self.records(0, self.items))]


class AnnotationPerceiver:
    """COCO boxes plus depth maps; the instances JSON is read once, as the index of the work."""

    def __init__(self, loaded: LoadedSpec, limit: int | None):
        self.loaded, self.source = loaded, loaded.spec.source
        assert isinstance(self.source, AnnotationsSource)
        instances = loaded.resolve(self.source.instances)
        self.index = read_instances(instances)[:limit]
        if not self.index:
            raise ForgeError(f"{instances}: lists no images; add entries to `images`")
        self.items = len(self.index)
        self.label = "perceiving (annotations)"

    def prepare(self, store: Store, folder: Path, window: int, progress: ProgressFactory = no_progress,
                stages: StageTimes | None = None) -> None:
        pass

    def records(self, start: int, stop: int) -> DataFrame:
        return perceive_annotations(self.source, self.loaded.base_dir, self.loaded.spec.objects, self.index[start:stop])

    def plans(self) -> list[tuple[str, DataFrame]]:
        return [("records", self.records(0, self.items))]


def perceiver_for(loaded: LoadedSpec, seed: int, limit: int | None, options: RunOptions) -> Perceiver | None:
    """The spec's perceiver; None for a table of records (`source: records`)."""
    kind = loaded.spec.source.kind
    if kind == "synthetic":
        return SyntheticPerceiver(loaded, seed, limit)
    if kind == "annotations":
        return AnnotationPerceiver(loaded, limit)
    if kind == "records":
        return None
    return ModelPerceiver(loaded, options, limit)
