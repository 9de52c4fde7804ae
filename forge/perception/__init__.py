"""Perception: images -> one record per image with grounded objects and their depth.

Every input (synthetic scenes, annotations, models) produces the same record
(`records.PERCEIVED_TYPE`), so everything downstream is shared.
"""

from __future__ import annotations

from daft import DataFrame

from forge.perception.annotations import perceive_annotations
from forge.perception.models import RunOptions, perceive_models
from forge.perception.synthetic import perceive_synthetic
from forge.spec.load import LoadedSpec
from forge.spec.schema import AnnotationsSource, ImagesSource, ModelsPerception, SyntheticSource, UrlsSource


def perceive(loaded: LoadedSpec, seed: int, limit: int | None, options: RunOptions) -> tuple[DataFrame, int]:
    """A lazy frame of perception records for the spec's source (models: the cold-cache plan),
    and how many images it reads."""
    spec, percentile = loaded.spec, loaded.spec.objects.depth_percentile
    if isinstance(spec.source, SyntheticSource):
        return perceive_synthetic(spec.source, seed, percentile, limit)
    if isinstance(spec.source, AnnotationsSource):
        return perceive_annotations(spec.source, loaded.base_dir, percentile, limit)
    assert isinstance(spec.source, (ImagesSource, UrlsSource)) and isinstance(spec.perception, ModelsPerception)
    return perceive_models(spec.source, spec.perception, loaded.base_dir, percentile, limit, options)
