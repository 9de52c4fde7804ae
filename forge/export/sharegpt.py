"""LLaMA-Factory's `sharegpt` format with images (`data/mllm_demo.json`): a JSON list of
{messages: [{role: user, content: "<image>question"}, {role: assistant, content}], images: [path]},
and the `dataset_info.json` entry that declares it. Image paths resolve against the dataset
folder (LLaMA-Factory's `media_dir`, by default `dataset_dir`): point `dataset_dir` at the export
folder. The number of `<image>` tokens must equal the number of images: one, in the first turn."""

from __future__ import annotations

from pathlib import Path

from forge.export.samples import ExportOptions, Sample
from forge.export.writing import write_json

FILE, INFO, NAME = "sharegpt.json", "dataset_info.json", "forge_spatial"


def messages(sample: Sample) -> list[dict]:
    out = []
    for i, row in enumerate(sample.rows):
        out.append({"role": "user", "content": ("<image>" if i == 0 else "") + row["question"]})
        out.append({"role": "assistant", "content": row["answer"]})
    return out


def write(samples: list[Sample], out: Path, options: ExportOptions) -> list[Path]:
    items = [{"messages": messages(s), "images": [s.image.path], **s.meta()} for s in samples]
    info = {NAME: {"file_name": FILE, "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"},
                   "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}
    return [write_json(out / FILE, items), write_json(out / INFO, info)]
