"""Detector vocabularies: inline lists, text files (one name per line), or built-in class lists."""

from __future__ import annotations

from pathlib import Path

BUILTIN = {"coco": "coco.txt", "objects365": "objects365.txt"}


def read_vocabulary_file(path: Path) -> list[str]:
    """Names from a text file: one per line; blank lines and lines starting with # are skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def resolve_vocabulary(value: str | list[str], base_dir: Path) -> list[str]:
    """The list of names a vocabulary setting stands for; ValueError says what is wrong."""
    if isinstance(value, list):
        names = [name.strip() for name in value]
    elif value in BUILTIN:
        names = read_vocabulary_file(Path(__file__).parent / BUILTIN[value])
    else:
        path = base_dir / value
        if not path.is_file():
            raise ValueError(f"{value!r} is neither a built-in vocabulary ({', '.join(BUILTIN)}) nor a file ({path} not found)")
        names = read_vocabulary_file(path)
    if not names or not all(names):
        raise ValueError("vocabulary is empty or has blank names")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"vocabulary repeats {', '.join(repr(d) for d in duplicates[:3])}: each name must appear once")
    return names
