"""Coordinates in the notation each trainer's model was taught.

forge writes boxes and points as `(x1,y1,x2,y2)` / `(x,y)` on the [0, 1000] grid (stored boxes are
fractions). Qwen-VL wants `<box>(x1,y1),(x2,y2)</box>` on [0, 1000) — 1000 becomes 999; Qwen2.5-VL
wants absolute pixels of the image it is shown, as JSON (`bbox_2d`, `point_2d`). A row's question
and answer are re-written from the named object's stored box, never parsed back from text — by the
exporter and by `forge export-check` alike, so both mean the same box.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

Box = list[float]


def grid(value: float) -> int:
    return int(round(value * 1000))


def forge_box(box: Box) -> str:
    return "(" + ",".join(str(grid(v)) for v in box) + ")"


def forge_point(box: Box) -> str:
    return f"({grid((box[0] + box[2]) / 2)},{grid((box[1] + box[3]) / 2)})"


@dataclass(frozen=True)
class Notation:
    """How one trainer writes a box or point: inside a question, as an answer, and the hint a question
    gives so the model knows the notation it must answer in."""

    box: Callable[[Box], str]
    point: Callable[[Box], str]
    box_answer: Callable[[str, Box], str]
    point_answer: Callable[[str, Box], str]
    box_hint: str
    point_hint: str


def question(row: dict, notation: Notation) -> str:
    """The row's question with every coordinate of its first object in `notation`."""
    text = row["question"]
    if not row.get("objects"):
        return text
    corners = list(row["objects"][0]["box"])
    text = text.replace(forge_box(corners), notation.box(corners)).replace(forge_point(corners), notation.point(corners))
    if row["answer_type"] == "box":
        return _hinted(text, "(x1,y1,x2,y2)", notation.box_hint)
    if row["answer_type"] == "point":
        return _hinted(text, "(x,y)", notation.point_hint)
    return text


def answer(row: dict, notation: Notation) -> str:
    """The row's answer in `notation`: a box or point answer from its first object's stored box."""
    if not row.get("objects") or row["answer_type"] not in ("box", "point"):
        return row["answer"]
    label, corners = row["objects"][0]["label"], list(row["objects"][0]["box"])
    return (notation.box_answer if row["answer_type"] == "box" else notation.point_answer)(label, corners)


def _hinted(text: str, notation: str, hint: str) -> str:
    """The question naming the answer's notation: in place of forge's, or added when it names none."""
    return text.replace(notation, hint) if notation in text else f"{text} Answer as {hint}."


def _qwen_grid(value: float) -> int:
    return min(grid(value), 999)


def _qwen_box(b: Box) -> str:
    return f"<box>({_qwen_grid(b[0])},{_qwen_grid(b[1])}),({_qwen_grid(b[2])},{_qwen_grid(b[3])})</box>"


def _qwen_point(b: Box) -> str:
    return f"({_qwen_grid((b[0] + b[2]) / 2)},{_qwen_grid((b[1] + b[3]) / 2)})"


# Qwen-VL: `<ref>label</ref><box>(x1,y1),(x2,y2)</box>` on [0, 1000)
QWEN = Notation(_qwen_box, _qwen_point, lambda label, b: f"<ref>{label}</ref>{_qwen_box(b)}", lambda _, b: _qwen_point(b),
                "<ref>object</ref><box>(x1,y1),(x2,y2)</box> (0-999)", "(x,y) (0-999)")


def qwen25(width: int, height: int) -> Notation:
    """Qwen2.5-VL: absolute pixels of the image the model sees (`width` x `height`, as its processor
    resized it), clamped to the last pixel as tools/process_bbox.ipynb does; answers as JSON."""
    def x(v: float) -> int:
        return max(0, min(round(v * width), width - 1))

    def y(v: float) -> int:
        return max(0, min(round(v * height), height - 1))

    def px(b: Box) -> list[int]:
        return [x(b[0]), y(b[1]), x(b[2]), y(b[3])]

    def centre(b: Box) -> list[int]:
        return [x((b[0] + b[2]) / 2), y((b[1] + b[3]) / 2)]

    return Notation(lambda b: json.dumps(px(b)), lambda b: json.dumps(centre(b)),
                    lambda label, b: json.dumps([{"bbox_2d": px(b), "label": label}]),
                    lambda label, b: json.dumps([{"point_2d": centre(b), "label": label}]),
                    'JSON [{"bbox_2d": [x1, y1, x2, y2], "label": ...}] in pixels',
                    'JSON [{"point_2d": [x, y], "label": ...}] in pixels')
