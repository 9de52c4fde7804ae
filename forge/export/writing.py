"""Annotation files written whole or not at all: a temporary file renamed into place."""

from __future__ import annotations

import json
from pathlib import Path


def write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_json(path: Path, value: object) -> Path:
    return write_text(path, json.dumps(value, ensure_ascii=False, indent=1, default=str))


def write_jsonl(path: Path, values: list) -> Path:
    return write_text(path, "".join(json.dumps(v, ensure_ascii=False, default=str) + "\n" for v in values))
