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

import re
from pathlib import Path
from typing import Iterator

import forge.export.coordinates as coordinates  # the module itself: importing it from the package would loop back
from forge.export.reading import ReadSample, guarded, ids, load_json, one_image_token, stated_sizes, turns
from forge.export.samples import ExportOptions, Sample
from forge.export.writing import write_json

QWEN_FILE, QWEN25_FILE = "qwen.json", "qwen2_5.json"
_PICTURE = re.compile(r"Picture 1: <img>(.+?)</img>\n")


def answer_qwen(row: dict, width: int, height: int, options: ExportOptions) -> str:
    """A row's answer as Qwen-VL learns it (the picture's size does not matter on its grid)."""
    return coordinates.answer(row, coordinates.QWEN)


def input_size(width: int, height: int, options: ExportOptions) -> tuple[int, int]:
    """(width, height) of a `width` x `height` image as Qwen2.5-VL's processor feeds it to the model
    (patches of 28 px)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize  # the processor's own rule

    resized_height, resized_width = smart_resize(height, width, factor=28, min_pixels=options.qwen_min_pixels,
                                                 max_pixels=options.qwen_max_pixels)
    return resized_width, resized_height


def sizes_qwen25(width: int, height: int, options: ExportOptions) -> dict[str, int]:
    """What a Qwen2.5-VL item states of its picture: its size and the size the processor resizes it to."""
    input_width, input_height = input_size(width, height, options)
    return {"width": width, "height": height, "input_width": input_width, "input_height": input_height}


def answer_qwen25(row: dict, width: int, height: int, options: ExportOptions) -> str:
    """A row's answer as Qwen2.5-VL learns it: boxes in pixels of the `width` x `height` picture as resized."""
    return coordinates.answer(row, coordinates.qwen25(*input_size(width, height, options)))


def qwen_turns(sample: Sample, options: ExportOptions) -> list[dict]:
    out = []
    for i, row in enumerate(sample.rows):
        prefix = f"Picture 1: <img>{sample.image.path}</img>\n" if i == 0 else ""
        out += [{"from": "user", "value": prefix + coordinates.question(row, coordinates.QWEN)},
                {"from": "assistant", "value": answer_qwen(row, sample.image.width, sample.image.height, options)}]
    return out


def qwen25_turns(sample: Sample, options: ExportOptions) -> list[dict]:
    out = []
    notation = coordinates.qwen25(*input_size(sample.image.width, sample.image.height, options))
    for i, row in enumerate(sample.rows):
        out += [{"from": "human", "value": ("<image>\n" if i == 0 else "") + coordinates.question(row, notation)},
                {"from": "gpt", "value": answer_qwen25(row, sample.image.width, sample.image.height, options)}]
    return out


def write_qwen(samples: list[Sample], out: Path, options: ExportOptions) -> list[Path]:
    return [write_json(out / QWEN_FILE, [{"id": s.id, "conversations": qwen_turns(s, options), **s.meta()} for s in samples])]


def write_qwen25(samples: list[Sample], out: Path, options: ExportOptions) -> list[Path]:
    items = [{"image": s.image.path, "conversations": qwen25_turns(s, options), **s.meta(),
              **sizes_qwen25(s.image.width, s.image.height, options)} for s in samples]
    return [write_json(out / QWEN25_FILE, items)]


def _qwen_sample(item: dict, name: str, root: Path) -> ReadSample:
    conversation = item["conversations"]
    picture = _PICTURE.match(conversation[0]["value"])
    if picture is None:
        raise ValueError('the first user turn does not open with "Picture 1: <img>path</img>"')
    answers = turns(conversation, "from", "value", "user", "assistant")
    return ReadSample(QWEN_FILE, name, ids(item["qa_id"]), answers, root / picture.group(1), stated_sizes(item))


def read_qwen(folder: Path, root: Path) -> Iterator[ReadSample]:
    """Each item as Qwen-VL's finetune.py tokenizes it: the picture named in the first user turn's <img>."""
    for number, item in enumerate(load_json(folder, QWEN_FILE), 1):
        yield guarded(QWEN_FILE, f"sample {number}", lambda: _qwen_sample(item, f"sample {number}", root))


def _qwen25_sample(item: dict, name: str, root: Path) -> ReadSample:
    one_image_token(item["conversations"], "value")
    answers = turns(item["conversations"], "from", "value", "human", "gpt")
    return ReadSample(QWEN25_FILE, name, ids(item["qa_id"]), answers, root / item["image"],
                      stated_sizes(item, "input_width", "input_height"))


def read_qwen25(folder: Path, root: Path) -> Iterator[ReadSample]:
    """Each item as qwen-vl-finetune's data processor takes it: `image` under data_path, one `<image>`, human/gpt
    turns."""
    for number, item in enumerate(load_json(folder, QWEN25_FILE), 1):
        yield guarded(QWEN25_FILE, f"sample {number}", lambda: _qwen25_sample(item, f"sample {number}", root))
