"""What a source's `path` names: one rule for every kind of source that reads files."""

from __future__ import annotations

import glob as globbing
from pathlib import Path


def expand(path: Path, suffixes: set[str]) -> list[str]:
    """Sorted files: those with one of `suffixes` anywhere under a folder, the matches of a glob, or the
    path itself. A folder whose own suffix is listed (a `.lance` dataset) is one item, not searched."""
    text = str(path)
    if path.is_dir() and Path(text.rstrip("/")).suffix.lower() not in suffixes:
        return sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if any(ch in text for ch in "*?["):
        return sorted(globbing.glob(text, recursive=True))
    return [text] if path.exists() else []
