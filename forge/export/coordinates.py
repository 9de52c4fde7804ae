"""Coordinates in the notation each trainer's model was taught.

forge writes boxes and points as `(x1,y1,x2,y2)` / `(x,y)` on the [0, 1000] grid (stored boxes are
fractions). Qwen-VL wants `<box>(x1,y1),(x2,y2)</box>` on [0, 1000) — 1000 becomes 999; Qwen2.5-VL
wants absolute pixels of the image it is shown, as JSON (`bbox_2d`, `point_2d`). A row's question
and answer are re-written from the named object's stored box, never parsed back from text.
"""

from __future__ import annotations

import json
from typing import Callable

Box = list[float]


def grid(value: float) -> int:
    return int(round(value * 1000))


def forge_box(box: Box) -> str:
    return "(" + ",".join(str(grid(v)) for v in box) + ")"


def forge_point(box: Box) -> str:
    return f"({grid((box[0] + box[2]) / 2)},{grid((box[1] + box[3]) / 2)})"


def restyle(row: dict, box: Callable[[Box], str], point: Callable[[Box], str], box_answer: Callable[[str, Box], str],
            point_answer: Callable[[str, Box], str], box_hint: str, point_hint: str) -> tuple[str, str]:
    """(question, answer) with every coordinate of the row's first object in another notation."""
    question, answer = row["question"], row["answer"]
    if not row.get("objects"):
        return question, answer
    label, corners = row["objects"][0]["label"], list(row["objects"][0]["box"])
    question = question.replace(forge_box(corners), box(corners)).replace(forge_point(corners), point(corners))
    if row["answer_type"] == "box":
        return _hinted(question, "(x1,y1,x2,y2)", box_hint), box_answer(label, corners)
    if row["answer_type"] == "point":
        return _hinted(question, "(x,y)", point_hint), point_answer(label, corners)
    return question, answer


def _hinted(question: str, notation: str, hint: str) -> str:
    """The question naming the answer's notation: in place of forge's, or added when it names none."""
    return question.replace(notation, hint) if notation in question else f"{question} Answer as {hint}."


def qwen(row: dict) -> tuple[str, str]:
    """Qwen-VL: `<ref>label</ref><box>(x1,y1),(x2,y2)</box>` on [0, 1000)."""
    def g(v: float) -> int:
        return min(grid(v), 999)

    def box(b: Box) -> str:
        return f"<box>({g(b[0])},{g(b[1])}),({g(b[2])},{g(b[3])})</box>"

    def point(b: Box) -> str:
        return f"({g((b[0] + b[2]) / 2)},{g((b[1] + b[3]) / 2)})"

    return restyle(row, box, point, lambda label, b: f"<ref>{label}</ref>{box(b)}", lambda _, b: point(b),
                   "<ref>object</ref><box>(x1,y1),(x2,y2)</box> (0-999)", "(x,y) (0-999)")


def qwen25(row: dict, width: int, height: int) -> tuple[str, str]:
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

    return restyle(row, lambda b: json.dumps(px(b)), lambda b: json.dumps(centre(b)),
                   lambda label, b: json.dumps([{"bbox_2d": px(b), "label": label}]),
                   lambda label, b: json.dumps([{"point_2d": centre(b), "label": label}]),
                   'JSON [{"bbox_2d": [x1, y1, x2, y2], "label": ...}] in pixels',
                   'JSON [{"point_2d": [x, y], "label": ...}] in pixels')
