"""LLaVA 1.5 (`llava/train/train.py`, LazySupervisedDataset): a JSON list of
{id, image, conversations: [{from: human, value}, {from: gpt, value}, ...]}; the image path is
joined to `--image_folder` (the export folder) and "<image>" opens the first human turn only."""

from __future__ import annotations

from pathlib import Path

from forge.export.samples import ExportOptions, Sample
from forge.export.writing import write_json

FILE = "llava.json"


def conversations(sample: Sample, image_token: str = "<image>\n") -> list[dict]:
    turns = []
    for i, row in enumerate(sample.rows):
        turns.append({"from": "human", "value": (image_token if i == 0 else "") + row["question"]})
        turns.append({"from": "gpt", "value": row["answer"]})
    return turns


def write(samples: list[Sample], out: Path, options: ExportOptions) -> list[Path]:
    items = [{"id": s.id, "image": s.image.path, "conversations": conversations(s), **s.meta()} for s in samples]
    return [write_json(out / FILE, items)]
