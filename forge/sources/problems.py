"""An annotation file's problems, one line each: the file, the key path (or row), what is wrong and how
to fix it. Every problem is found before any work starts; the first `MAX_PROBLEMS` are listed."""

from __future__ import annotations

from pathlib import Path

from forge.errors import SpecError

MAX_PROBLEMS = 20  # listed one per line; the rest are counted


class Problems:
    def __init__(self, path: Path):
        self.path, self.lines, self.count = path, [], 0

    def add(self, where: str, message: str) -> None:
        self.count += 1
        if len(self.lines) < MAX_PROBLEMS:
            self.lines.append(f"{self.path}: {where}: {message}")

    def value(self, record: object, key: str, kind: type | tuple, where: str):
        """record[key] if it is of `kind` (never a bool), else None with a problem recorded."""
        if not isinstance(record, dict) or key not in record:
            self.add(where, f"missing {key!r}")
            return None
        value = record[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            self.add(f"{where}.{key}", f"{shown} is not a {names}")
            return None
        return value

    def fail(self, line: str) -> None:
        """A problem that stops reading at once (the file cannot be parsed further)."""
        raise SpecError([*self.lines, line])

    def unreadable(self, line: str) -> None:
        """The file is not valid text of its format: that one line, since what was found before may be
        its echo (a missing bracket misplaces every value after it)."""
        raise SpecError([line])

    def raise_any(self) -> None:
        if self.lines:
            more = self.count - len(self.lines)
            raise SpecError(self.lines + ([f"{self.path}: ... and {more} more problems"] if more > 0 else []))
