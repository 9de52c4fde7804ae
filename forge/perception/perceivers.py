"""The perceiver of a spec's source: one object that `forge explain` shows and `forge build` runs.

A perceiver yields perception records for a range of its items (scenes, annotated images,
photos), so a build can stage them a chunk at a time; `plan` is the whole Daft plan. A source
of records made elsewhere (`source: records`) needs no perceiver: the build reads the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

from daft import DataFrame

from forge.perception.annotations import check_image, perceive_annotations
from forge.perception.model_perceiver import ModelPerceiver
from forge.perception.synthetic import perceive_synthetic
from forge.perception.tasks import RunOptions
from forge.progress import ProgressFactory, StageTimes, no_progress
from forge.sources.annotated import TABLE_SCHEMA, AnnotatedImages, stage
from forge.spec.load import LoadedSpec
from forge.spec.schema import AnnotationsSource, SyntheticSource
from forge.store import Store


def _quiet(_: str) -> None:
    pass


class Perceiver(Protocol):
    label: str  # what the progress bar says

    @property
    def items(self) -> int:
        """Images it yields records for (after --limit); known after `prepare`."""

    def inputs(self, db: Path, progress: ProgressFactory = no_progress, echo: Callable[[str], None] = _quiet) -> None:
        """Read what the source needs before the build takes the database `db` (an annotation file is
        staged there, once per file and label rules, and said in a line to `echo`): its problems stop the
        build before anything is written."""

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

    def inputs(self, db: Path, progress: ProgressFactory = no_progress, echo: Callable[[str], None] = _quiet) -> None:
        pass

    def prepare(self, store: Store, folder: Path, window: int, progress: ProgressFactory = no_progress,
                stages: StageTimes | None = None) -> None:
        pass

    def records(self, start: int, stop: int) -> DataFrame:
        return perceive_synthetic(self.source, self.seed, self.objects, start, stop)

    def plans(self) -> list[tuple[str, DataFrame]]:
        return [("records", self.records(0, self.items))]


class AnnotationPerceiver:
    """Annotated boxes plus depth maps: the annotation file is staged once, streaming, into a per-image
    table (`forge/sources/annotated.py`) that records are then read from a window at a time."""

    def __init__(self, loaded: LoadedSpec, limit: int | None):
        self.loaded, self.source, self.limit = loaded, loaded.spec.source, limit
        assert isinstance(self.source, AnnotationsSource)
        self.annotated: AnnotatedImages | None = None  # from `prepare`
        self.label = "perceiving (annotations)"

    @property
    def items(self) -> int:
        assert self.annotated is not None, "prepare first"
        return self.annotated.rows if self.limit is None else min(self.limit, self.annotated.rows)

    def inputs(self, db: Path, progress: ProgressFactory = no_progress, echo: Callable[[str], None] = _quiet) -> None:
        self.annotated = stage(self.source, self.loaded.base_dir, Path(db), check_image, progress)
        echo(self.annotated.line())

    def prepare(self, store: Store, folder: Path, window: int, progress: ProgressFactory = no_progress,
                stages: StageTimes | None = None) -> None:
        pass

    def records(self, start: int, stop: int) -> DataFrame:
        assert self.annotated is not None, "prepare first"
        return perceive_annotations(self.source, self.loaded.base_dir, self.loaded.spec.objects,
                                    self.annotated.read(start, stop))

    def plans(self) -> list[tuple[str, DataFrame]]:
        """The plan of a window (shown over no rows: the file is not read to explain it)."""
        return [("records, a window of the staged annotation table at a time",
                 perceive_annotations(self.source, self.loaded.base_dir, self.loaded.spec.objects, TABLE_SCHEMA.empty_table()))]


def perceiver_for(loaded: LoadedSpec, seed: int, limit: int | None, options: RunOptions) -> Perceiver | None:
    """The spec's perceiver (by its perception: an annotations source with `perception: models` takes its
    boxes from the annotations and the rest from models); None for a table of records."""
    kind = loaded.spec.perception.kind
    if kind == "synthetic":
        return SyntheticPerceiver(loaded, seed, limit)
    if kind == "annotations":
        return AnnotationPerceiver(loaded, limit)
    if kind == "records":
        return None
    return ModelPerceiver(loaded, options, limit)
