"""Qwen-VL and Qwen2.5-VL fine-tuning files.

Qwen-VL (`finetune.py`, README "Finetuning"): a JSON list of {id, conversations: [{from: user,
value: "Picture 1: <img>path</img>\\nquestion"}, {from: assistant, value}]}; boxes are
`<ref>label</ref><box>(x1,y1),(x2,y2)</box>` on [0, 1000).
Qwen2.5-VL (`qwen-vl-finetune`, qwenvl/data/data_processor.py): {image, conversations: [{from: human,
value: "<image>\\nquestion"}, {from: gpt, value}]}, one `<image>` per image; boxes and points are
absolute pixels of the image *as the processor resized it* (`smart_resize`, tools/process_bbox.ipynb),
answered as JSON (`[{"bbox_2d": [x1, y1, x2, y2], "label": ...}]`); each item records that size
(`input_width`, `input_height`). The image path resolves against the dataset's `data_path` (the
export folder).
"""

from __future__ import annotations

from pathlib import Path

from forge.export import coordinates
from forge.export.samples import ExportOptions, Sample
from forge.export.writing import write_json

QWEN_FILE, QWEN25_FILE = "qwen.json", "qwen2_5.json"


def qwen_turns(sample: Sample) -> list[dict]:
    turns = []
    for i, row in enumerate(sample.rows):
        question, answer = coordinates.qwen(row)
        prefix = f"Picture 1: <img>{sample.image.path}</img>\n" if i == 0 else ""
        turns += [{"from": "user", "value": prefix + question}, {"from": "assistant", "value": answer}]
    return turns


def input_size(sample: Sample, options: ExportOptions) -> tuple[int, int]:
    """(width, height) of the image as Qwen2.5-VL's processor feeds it to the model (patches of 28 px)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize  # the processor's own rule

    height, width = smart_resize(sample.image.height, sample.image.width, factor=28,
                                 min_pixels=options.qwen_min_pixels, max_pixels=options.qwen_max_pixels)
    return width, height


def qwen25_turns(sample: Sample, options: ExportOptions) -> list[dict]:
    turns = []
    width, height = input_size(sample, options)
    for i, row in enumerate(sample.rows):
        question, answer = coordinates.qwen25(row, width, height)
        turns += [{"from": "human", "value": ("<image>\n" if i == 0 else "") + question}, {"from": "gpt", "value": answer}]
    return turns


def write_qwen(samples: list[Sample], out: Path, options: ExportOptions) -> list[Path]:
    return [write_json(out / QWEN_FILE, [{"id": s.id, "conversations": qwen_turns(s), **s.meta()} for s in samples])]


def write_qwen25(samples: list[Sample], out: Path, options: ExportOptions) -> list[Path]:
    items = []
    for s in samples:
        width, height = input_size(s, options)
        items.append({"image": s.image.path, "conversations": qwen25_turns(s, options), **s.meta(),
                      "input_width": width, "input_height": height})
    return [write_json(out / QWEN25_FILE, items)]
