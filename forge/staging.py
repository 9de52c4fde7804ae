"""A build's work in progress, kept on disk so a build that dies resumes where it stopped.

`<db>/.forge-staging/<table>.<spec name>/` holds the staged perception records, each chunk's
first-pass counts and verified candidates (what the second pass phrases; deleted once phrased),
the metadata of the data files each chunk wrote, and the rows set aside for balancing. Every file is written under a temporary name and renamed, so a file is complete or
absent. A rerun of the same build (same key: spec hash, seed, limit, chunk size, inputs) reuses
what is there; any other build discards it, with the data files it wrote but never committed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from forge.store import Store

STAGING = ".forge-staging"
SUFFIX = {"records": ".parquet", "counted": ".json", "cells": ".arrow", "verified": ".arrow", "written": ".json",
          "boundary": ".arrow"}


class Staging:
    """An open staging folder (`open` finds or starts the one of a build)."""

    def __init__(self, store: Store, root: Path):
        self.store, self.root = store, root

    @classmethod
    def open(cls, store: Store, table: str, spec_name: str, key: str) -> Staging:
        staging = cls(store, store.path / STAGING / f"{table}.{spec_name}")
        state = staging.root / "state.json"
        if staging.root.exists() and (not state.exists() or json.loads(state.read_text()).get("key") != key):
            staging.discard(table)
        for kind in SUFFIX:
            (staging.root / kind).mkdir(parents=True, exist_ok=True)
        if not state.exists():
            cls._atomic(state, lambda tmp: tmp.write_text(json.dumps({"key": key, "table": table})))
        return staging

    def path(self, kind: str, index: int, part: str | None = None) -> Path:
        """A chunk's file of `kind`; `part` names one of several (verified candidates per family)."""
        return self.root / kind / (f"{index:06d}{'.' + part if part else ''}{SUFFIX[kind]}")

    def done(self, kind: str) -> set[int]:
        return {int(p.name.split(".")[0]) for p in (self.root / kind).glob(f"*{SUFFIX[kind]}")}

    def write(self, kind: str, index: int, save: Callable[[Path], object], part: str | None = None) -> None:
        """Write one file through `save(temporary path)`, then rename it into place."""
        self._atomic(self.path(kind, index, part), save)

    def write_json(self, kind: str, index: int, data: object) -> None:
        self.write(kind, index, lambda tmp: tmp.write_text(json.dumps(data)))

    def read_json(self, kind: str, index: int):
        return json.loads(self.path(kind, index).read_text())

    @staticmethod
    def _atomic(target: Path, save: Callable[[Path], object]) -> None:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        save(tmp)
        os.replace(tmp, target)

    def fragments(self) -> list[dict]:
        return [f for i in sorted(self.done("written")) for f in self.read_json("written", i)["fragments"]]

    def save_file(self, name: str, save: Callable[[Path], object]) -> Path:
        target = self.root / name
        self._atomic(target, save)
        return target

    def discard(self, table: str) -> None:
        """Forget the staged build, deleting data files it wrote that were never committed."""
        written = self.root / "written"
        staged = [f for p in sorted(written.glob("*.json")) for f in json.loads(p.read_text())["fragments"]] \
            if written.exists() else []
        self.store.discard_rows(table, staged)
        shutil.rmtree(self.root, ignore_errors=True)

    def finish(self) -> None:
        """The build is committed: its staging is no longer needed."""
        shutil.rmtree(self.root, ignore_errors=True)
