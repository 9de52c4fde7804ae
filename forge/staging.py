"""A build's work in progress, kept on disk so a build that dies resumes where it stopped.

`<db>/.forge-staging/<table>.<spec name>/` holds the staged perception records, each chunk's rows
that repeat an image met earlier (judged once), its first-pass counts and verified candidates (what the second pass phrases; deleted once phrased),
the metadata of the data files each chunk wrote, and the rows set aside for balancing. Every file is
written under a temporary name and renamed, so a file is complete or absent, and gets a sidecar
(`<name>.b2`) with its name and BLAKE2b digest. A rerun of the same build (same key: spec hash, seed,
limit, chunk size, inputs) checks every staged file against its sidecar before reusing any: a file
changed, swapped or cut short since it was written stops the build in one line (rerun with
`--no-resume`), and a file whose sidecar never got written (the run died in between) is redone. Any
other build, or staging whose state cannot be read, is discarded, with the data files it wrote but
never committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from forge.errors import ForgeError
from forge.store import Store

STAGING = ".forge-staging"
SUFFIX = {"records": ".parquet", "counted": ".json", "cells": ".arrow", "verified": ".arrow", "written": ".json",
          "boundary": ".arrow", "duplicates": ".npy"}
SIDECAR = ".b2"


def _digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_checked(target: Path, save: Callable[[Path], object], root: Path) -> None:
    """Write a staged file through `save(temporary path)`, rename it into place, then its sidecar: the
    file's name under `root` and its digest."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    save(tmp)
    check = {"file": str(target.relative_to(root)), "blake2b": _digest(tmp)}
    os.replace(tmp, target)
    sidecar = target.with_name(target.name + SIDECAR)
    part = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    part.write_text(json.dumps(check))
    os.replace(part, sidecar)


class Staging:
    """An open staging folder (`open` finds or starts the one of a build)."""

    def __init__(self, store: Store, root: Path):
        self.store, self.root = store, root

    @classmethod
    def open(cls, store: Store, table: str, spec_name: str, key: str, resume: bool = True) -> Staging:
        """The staging of the build with `key`: what a run of it left is checked and reused (unless not
        `resume`); another build's, or staging that cannot be read, is discarded."""
        staging = cls(store, store.path / STAGING / f"{table}.{spec_name}")
        state = staging.root / "state.json"
        if staging.root.exists():
            if resume and staging._key() == key:
                staging.verify()
            else:
                staging.discard(table)
        for kind in SUFFIX:
            (staging.root / kind).mkdir(parents=True, exist_ok=True)
        if not state.exists():
            write_checked(state, lambda tmp: tmp.write_text(json.dumps({"key": key, "table": table})), staging.root)
        return staging

    def _key(self) -> str | None:
        """The key of the build staged here; None when its state is missing, unreadable or tampered with."""
        state = self.root / "state.json"
        try:
            sidecar = json.loads(state.with_name(state.name + SIDECAR).read_text())
            if sidecar.get("blake2b") != _digest(state):
                return None
            return json.loads(state.read_text()).get("key")
        except (OSError, ValueError, AttributeError):
            return None

    def verify(self) -> None:
        """Check every staged file against its sidecar before a rerun reuses it: a mismatch is one line
        (rerun with --no-resume); a file without its sidecar (written by a run that died right after) is
        removed, to be made again."""
        for path in sorted(p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            if path.name.endswith(SIDECAR):
                if not path.with_name(path.name[: -len(SIDECAR)]).exists():
                    path.unlink()
                continue
            sidecar = path.with_name(path.name + SIDECAR)
            if not sidecar.exists():
                path.unlink()
                continue
            try:
                check = json.loads(sidecar.read_text())
                same = check.get("file") == str(path.relative_to(self.root)) and check.get("blake2b") == _digest(path)
            except (OSError, ValueError, AttributeError):
                same = False
            if not same:
                raise ForgeError(f"{path}: this build's staged work was changed or damaged since it was written; run "
                                 "the build again with --no-resume to start it over")

    def path(self, kind: str, index: int, part: str | None = None) -> Path:
        """A chunk's file of `kind`; `part` names one of several (verified candidates per family)."""
        return self.root / kind / (f"{index:06d}{'.' + part if part else ''}{SUFFIX[kind]}")

    def done(self, kind: str) -> set[int]:
        return {int(p.name.split(".")[0]) for p in (self.root / kind).glob(f"*{SUFFIX[kind]}")
                if p.with_name(p.name + SIDECAR).exists()}

    def write(self, kind: str, index: int, save: Callable[[Path], object], part: str | None = None) -> None:
        """Write one file through `save(temporary path)`, then rename it into place, with its sidecar."""
        write_checked(self.path(kind, index, part), save, self.root)

    def write_json(self, kind: str, index: int, data: object) -> None:
        self.write(kind, index, lambda tmp: tmp.write_text(json.dumps(data)))

    def read_json(self, kind: str, index: int):
        return json.loads(self.path(kind, index).read_text())

    def fragments(self) -> list[dict]:
        return [f for i in sorted(self.done("written")) for f in self.read_json("written", i)["fragments"]]

    def save_file(self, name: str, save: Callable[[Path], object]) -> Path:
        target = self.root / name
        write_checked(target, save, self.root)
        return target

    def discard(self, table: str) -> None:
        """Forget the staged build, deleting data files it wrote that were never committed (those its
        readable records name: staging damaged beyond reading leaves at most unreferenced files)."""
        staged = []
        for path in sorted((self.root / "written").glob("*.json")):
            try:
                staged += json.loads(path.read_text())["fragments"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
        try:
            self.store.discard_rows(table, staged)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # fragment records that do not parse name nothing to delete
        shutil.rmtree(self.root, ignore_errors=True)

    def finish(self) -> None:
        """The build is committed: its staging is no longer needed."""
        shutil.rmtree(self.root, ignore_errors=True)
