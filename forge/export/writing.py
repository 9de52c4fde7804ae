"""Exports replaced whole: every format's files and images are written into a new folder beside the
old export, which the finished export then replaces (rename the old one away, rename the new one in,
delete the old one). So readers, and a run killed at any moment, see the old export or the new one,
never a mix. A killed run's folder (`.<name>.forge-export-...` beside the export) is removed by the next
export into the same folder; exports into one folder take turns (a lock file beside it, gone when done).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SCRATCH = ".forge-export-"  # `.<name>.forge-export-new-<pid>` (being written), `-old-<pid>` (being deleted)


@contextmanager
def replacing(folder: Path) -> Iterator[Path]:
    """A new empty folder beside `folder` to write the export into; when the block ends without an error it
    takes `folder`'s place (a symlinked `folder` is resolved: the export goes where the link points), else
    it is deleted and `folder` is left as it was."""
    target = Path(os.path.realpath(folder))
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}{SCRATCH}"
    with _turn(target.parent / f".{target.name}.forge-export.lock"):
        for stale in sorted(target.parent.iterdir()):  # a killed export's: only the lock holder writes these
            if stale.name.startswith(f"{prefix}old-") and not target.exists():
                stale.rename(target)  # killed between its two renames: the old export comes back
            elif stale.name.startswith(prefix):
                shutil.rmtree(stale, ignore_errors=True)
        new, old = target.parent / f"{prefix}new-{os.getpid()}", target.parent / f"{prefix}old-{os.getpid()}"
        new.mkdir()
        try:
            yield new
            if target.exists():
                target.rename(old)
            new.rename(target)
        except BaseException:
            if old.exists() and not target.exists():
                old.rename(target)
            shutil.rmtree(new, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _turn(lock: Path) -> Iterator[None]:
    """Hold `lock` (created, and removed when done): exports into one folder run one at a time. The kernel
    releases it when its holder dies; a waiter whose lock file was removed meanwhile takes the new one."""
    while True:
        with open(lock, "a") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            try:
                current = os.stat(lock).st_ino == os.fstat(file.fileno()).st_ino
            except FileNotFoundError:
                current = False
            if current:
                try:
                    yield
                finally:
                    lock.unlink(missing_ok=True)
                return


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, value: object) -> Path:
    return write_text(path, json.dumps(value, ensure_ascii=False, indent=1, default=str))


def write_jsonl(path: Path, values: list) -> Path:
    return write_text(path, "".join(json.dumps(v, ensure_ascii=False, default=str) + "\n" for v in values))
