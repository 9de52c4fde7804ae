"""User-facing errors: one line each, printed by the CLI without a traceback (exit code 2)."""

from __future__ import annotations


class ForgeError(Exception):
    """A mistake in the user's input (spec, paths, options) that the user can fix."""


class SpecError(ForgeError):
    """One or more problems in a spec file; each problem is one line `file:line: key.path: message`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))
