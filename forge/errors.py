"""User-facing errors: one line each, printed by the CLI without a traceback (exit code 2 for the user's
input, 1 for what the machine made impossible)."""

from __future__ import annotations

import errno
import re


class ForgeError(Exception):
    """A mistake in the user's input (spec, paths, options) that the user can fix."""


class SpecError(ForgeError):
    """One or more problems in a spec file; each problem is one line `file:line: key.path: message`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# What the machine, not the input, can make impossible while forge reads or writes: the message says
# what happened and what to do. Libraries report these in their own exception types (OSError, Polars'
# ComputeError, Daft's and Lance's errors); the OS error number is in the text as "os error N".
_ENVIRONMENT = {
    errno.ENOSPC: "no space left on the device: free some space (or write to another --db / --out); a build "
                  "resumes where it stopped",
    errno.EDQUOT: "disk quota exceeded: free some space (or write elsewhere); a build resumes where it stopped",
    errno.EROFS: "the file system is read-only: write the database or output to a writable folder",
    errno.EACCES: "permission denied: write to a folder you may write to",
    errno.ENOENT: "a file or folder vanished while forge was using it (was the database folder deleted?): run the "
                  "command again",
}
_TEXTS = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded",
          errno.EROFS: "Read-only file system", errno.EACCES: "Permission denied",
          errno.ENOENT: "No such file or directory"}


def environment_problem(exc: BaseException) -> str | None:
    """One line for an error the machine caused (a full disk, a read-only or vanished folder, no
    permission), found in the exception or what caused it; None for anything else (a bug raises)."""
    seen = 0
    while exc is not None and seen < 10:
        code = exc.errno if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT else None
        text = str(exc)
        if code is None:
            match = re.search(r"os error (\d+)", text)
            code = int(match.group(1)) if match and int(match.group(1)) in _ENVIRONMENT else None
        if code is None:
            code = next((c for c, phrase in _TEXTS.items() if phrase in text), None)
        if code is not None:
            where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
            return f"{_ENVIRONMENT[code]}{where}"
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None
