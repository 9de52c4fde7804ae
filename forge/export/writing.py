"""Export files written whole or not at all: a temporary file renamed into place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable


def atomically(path: Path, save: Callable[[Path], object]) -> Path:
    """`save(temporary path)`, then rename it onto `path`, replacing what an earlier export left there."""
    tmp = path.with_name(path.name + ".part")
    tmp.unlink(missing_ok=True)
    save(tmp)
    tmp.replace(path)
    return path


def write_text(path: Path, text: str) -> Path:
    return atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, value: object) -> Path:
    return write_text(path, json.dumps(value, ensure_ascii=False, indent=1, default=str))


def write_jsonl(path: Path, values: list) -> Path:
    return write_text(path, "".join(json.dumps(v, ensure_ascii=False, default=str) + "\n" for v in values))
