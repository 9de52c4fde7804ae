"""LLaVA 1.5 (`llava/train/train.py`, LazySupervisedDataset): a JSON list of
{id, image, conversations: [{from: human, value}, {from: gpt, value}, ...]}; the image path is
joined to `--image_folder` (the export folder) and "<image>" opens the first human turn only."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from forge.export.reading import ReadSample, guarded, ids, load_json, one_image_token, stated_sizes, turns
from forge.export.samples import ExportOptions, Sample
from forge.export.writing import write_json

FILE = "llava.json"


def conversations(sample: Sample, image_token: str = "<image>\n") -> list[dict]:
    out = []
    for i, row in enumerate(sample.rows):
        out.append({"from": "human", "value": (image_token if i == 0 else "") + row["question"]})
        out.append({"from": "gpt", "value": row["answer"]})
    return out


def write(samples: list[Sample], out: Path, options: ExportOptions) -> list[Path]:
    items = [{"id": s.id, "image": s.image.path, "conversations": conversations(s), **s.meta()} for s in samples]
    return [write_json(out / FILE, items)]


def read(folder: Path, root: Path) -> Iterator[ReadSample]:
    """Each item as LazySupervisedDataset takes it: the image joined to the image folder, the gpt turns."""
    def parse(item: dict, name: str) -> ReadSample:
        one_image_token(item["conversations"], "value")
        answers = turns(item["conversations"], "from", "value", "human", "gpt")
        return ReadSample(FILE, name, ids(item["qa_id"]), answers, root / item["image"], stated_sizes(item))

    for number, item in enumerate(load_json(folder, FILE), 1):
        yield guarded(FILE, f"sample {number}", lambda: parse(item, f"sample {number}"))
