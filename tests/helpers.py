"""Helpers tests share: tiny-model specs and photos, a progress recorder. (Builds into temporary
databases and spec files from dicts live in conftest.py.)"""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

from PIL import Image

from forge.perception.synthetic_scene import render_scene

VOCAB = ["red cube", "blue cube", "green prism", "yellow cylinder"]


def models_spec(depth: str, owl: str) -> dict:
    return {
        "version": 1, "name": "tiny_models", "source": {"kind": "images", "path": "photos"},
        "perception": {"kind": "models", "depth": {"model": depth, "batch_size": 4},
                       "grounding": {"model": owl, "vocabulary": VOCAB, "threshold": 0.01, "max_objects": 6, "batch_size": 4}},
        "verify": {"drop_truncated": False, "unique_labels": False},
        "families": [{"name": "depth_order", "relation": "depth_order", "min_margin": 0.0, "questions": [{
            "answer_type": "two_choice", "choices": ["{a}", "{b}"], "answer": {"if_true": "{a}", "if_false": "{b}"},
            "templates": ["Closer: the {a} or the {b}?", "Nearer: the {a} or the {b}?", "In front: the {a} or the {b}?"]}]}],
    }


def write_photos(folder, count: int = 6) -> None:
    folder.mkdir()
    for i in range(count):
        Image.fromarray(render_scene(1, i, 160, 120, 3, 5, clutter=False).rgb).save(folder / f"p{i}.jpg")


class RecordingProgress:
    """A progress factory that keeps every bar's label, total and updates."""

    def __init__(self) -> None:
        self.bars: list[dict] = []

    @contextmanager
    def __call__(self, label: str, total: int, unit: str):
        bar = {"label": label, "total": total, "unit": unit, "updates": []}
        self.bars.append(bar)
        yield SimpleNamespace(update=bar["updates"].append)
