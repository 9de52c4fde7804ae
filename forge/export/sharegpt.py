"""LLaMA-Factory's `sharegpt` format with images (`data/mllm_demo.json`): a JSON list of
{messages: [{role: user, content: "<image>question"}, {role: assistant, content}], images: [path]},
and the `dataset_info.json` entry that declares it. Image paths resolve against the dataset
folder (LLaMA-Factory's `media_dir`, by default `dataset_dir`): point `dataset_dir` at the export
folder. The number of `<image>` tokens must equal the number of images: one, in the first turn."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from forge.export.reading import ReadSample, Unreadable, guarded, ids, load_json, one_image_token, stated_sizes, turns
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


def read(folder: Path, root: Path) -> Iterator[ReadSample]:
    """The file `dataset_info.json` declares, read with its columns and tags as LLaMA-Factory's converter does;
    one image per sample and as many `<image>` tokens."""
    try:
        entry = load_json(folder, INFO)[NAME]
        file, columns, tags = entry["file_name"], entry["columns"], entry["tags"]
    except (KeyError, TypeError) as exc:
        raise Unreadable(f"{INFO}: no usable entry {NAME!r} ({type(exc).__name__}: {exc}); export again") from None

    def parse(item: dict, name: str) -> ReadSample:
        conversation = item[columns["messages"]]
        [image] = item[columns["images"]]
        one_image_token(conversation, tags["content_tag"])
        answers = turns(conversation, tags["role_tag"], tags["content_tag"], tags["user_tag"], tags["assistant_tag"])
        return ReadSample(file, name, ids(item["qa_id"]), answers, root / image, stated_sizes(item))

    for number, item in enumerate(load_json(folder, file), 1):
        yield guarded(file, f"sample {number}", lambda: parse(item, f"sample {number}"))
