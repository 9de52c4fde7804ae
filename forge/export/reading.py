"""Reading an export back the way its trainer does, for `forge export-check`.

Each format module's `read(folder, root)` yields its samples as the trainer gets them from the
format's own file(s): which QA rows (`qa_ids`), the answer of each turn, the picture (a file under
`root`, or the bytes stored inside the export) and the sizes the file states about that picture. A
sample the trainer could not parse comes with the reason instead; a file it could not read at all
raises `Unreadable`, one line naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


class Unreadable(Exception):
    """A file of the export its trainer cannot read at all (the message names it)."""


@dataclass(frozen=True)
class ReadSample:
    file: str  # the file it is in, relative to the export folder
    name: str  # where in that file: "sample 3", "line 7", "row 12", "sample <key>" ("" for the whole file)
    qa_ids: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # one per turn, as the trainer's model learns it
    image: Path | bytes | None = None  # a file to open, or the bytes the export embeds
    stated: dict[str, int] = field(default_factory=dict)  # what the file says of the picture: width, height, ...
    problem: str | None = None  # why the trainer could not parse it


_MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError)


def guarded(file: str, name: str, build: Callable[[], ReadSample]) -> ReadSample:
    """`build()`, or the sample with the reason its item is not what the trainer parses."""
    try:
        return build()
    except _MALFORMED as exc:
        return ReadSample(file, name, problem=f"not what the trainer parses ({type(exc).__name__}: {exc})")


def load_json(folder: Path, name: str) -> list | dict:
    """A JSON file of samples (or a dict of them), as trainers `json.load` it."""
    try:
        value = json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Unreadable(f"{name}: cannot be read as JSON ({exc}); export again") from None
    if not isinstance(value, (list, dict)):
        raise Unreadable(f"{name}: holds a {type(value).__name__}, not a list of samples; export again")
    return value


def json_lines(folder: Path, name: str) -> list[tuple[str, str]]:
    """("line N", text) for each line of a JSONL file (parse each with `json.loads` inside `guarded`)."""
    try:
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        raise Unreadable(f"{name}: cannot be read ({exc}); export again") from None
    return [(f"line {number}", line) for number, line in enumerate(lines, 1)]


def turns(messages: list, role: str, text: str, asker: str, answerer: str) -> list[str]:
    """The answers of a conversation whose turns alternate `asker`, `answerer` (the trainer's check)."""
    if not messages or len(messages) % 2 or any(m[role] != (asker, answerer)[i % 2] for i, m in enumerate(messages)):
        raise ValueError(f"turns are not {asker}/{answerer} pairs")
    answers = [m[text] for m in messages[1::2]]
    if not all(isinstance(a, str) for a in answers):
        raise TypeError("an answer is not text")
    return answers


def one_image_token(messages: list, text: str) -> None:
    """The conversation holds one `<image>` token, as its one picture (LLaVA and Qwen2.5-VL insert the picture
    there; LLaMA-Factory refuses a count that differs from the images')."""
    if sum(m[text].count("<image>") for m in messages) != 1:
        raise ValueError("the <image> tokens are not one, as its one picture")


def ids(value: str | list) -> list[str]:
    """A sample's QA ids: one, or a list for multi-turn samples."""
    return list(value) if isinstance(value, list) else [value]


def stated_sizes(item: dict, *keys: str) -> dict[str, int]:
    return {key: item[key] for key in ("width", "height", *keys)}
