"""Progress while a build runs and throughput per stage when it ends.

A build reports progress through a `ProgressFactory` (the CLI draws click progress bars on
stderr; tests record the updates), and times each stage so the summary can say where the
time went in images/s and QA rows/s.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol


class Progress(Protocol):
    def update(self, n: int) -> None: ...


ProgressFactory = Callable[[str, int, str], AbstractContextManager[Progress]]
"""(label, total, unit) -> a context manager yielding something with update(n)."""


class _Silent:
    def update(self, n: int) -> None:
        pass


def no_progress(label: str, total: int, unit: str) -> AbstractContextManager[Progress]:
    return nullcontext(_Silent())


@dataclass
class Stage:
    name: str
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)  # unit -> items handled in this stage

    def rates(self) -> str:
        if not self.counts:
            return ""
        if self.seconds <= 0:
            return ", ".join(f"{n} {unit}" for unit, n in self.counts.items())
        return ", ".join(f"{n} {unit} ({_rate(n / self.seconds)} {unit}/s)" for unit, n in self.counts.items())


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2g}" if value < 1 else f"{value:.1f}"


@dataclass
class StageTimes:
    """Stages in the order they ran; `total` spans the whole build."""

    stages: list[Stage] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[Stage]:
        """Time a stage; entered again (a stage run a window at a time), its time adds up in one line."""
        current = next((s for s in self.stages if s.name == name), None)
        if current is None:
            current = Stage(name)
            self.stages.append(current)
        clock = time.perf_counter()
        try:
            yield current
        finally:
            current.seconds += time.perf_counter() - clock

    def get(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def lines(self, total: Stage) -> list[str]:
        width = max(len(s.name) for s in [*self.stages, total])
        return [f"    {s.name:<{width}} {s.seconds:>7.2f} s  {s.rates()}" for s in [*self.stages, total]]
