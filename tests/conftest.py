"""Shared helpers: spec files written from dicts, builds into temp databases."""

from __future__ import annotations

import copy
from pathlib import Path

import lancedb
import pyarrow as pa
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEMO_SPEC = REPO / "specs" / "demo.yaml"


def demo_dict(**source_overrides) -> dict:
    spec = yaml.safe_load(DEMO_SPEC.read_text())
    spec["source"].update(source_overrides)
    return spec


def write_spec(folder: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(copy.deepcopy(spec), sort_keys=False))
    return path


def read_table(db: Path, table: str = "qa", key: str = "qa_id") -> pa.Table:
    return lancedb.connect(str(db)).open_table(table).to_arrow().sort_by(key)


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory) -> Path:
    """The demo spec (60 scenes) built once per test session; copy it (`copy_db`) before writing into it."""
    from forge.build import run_build
    from forge.spec.load import load_spec

    folder = tmp_path_factory.mktemp("demo_db")
    run_build(load_spec(write_spec(folder, demo_dict(images=60))), folder / "db", echo=lambda _: None)
    return folder / "db"


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory, demo_db) -> Path:
    """The demo build, the same questions on the same images under another spec name (duplicates for
    `forge sample` to drop), and 40 images of the grounding family (many cells when stratified by answer)."""
    from forge.build import run_build
    from forge.spec.load import load_spec

    folder = tmp_path_factory.mktemp("sample")
    quiet = {"echo": lambda _: None}
    copy_db(demo_db, folder)
    copy = dict(demo_dict(images=60), name="demo_copy")
    run_build(load_spec(write_spec(folder, copy, name="copy.yaml")), folder / "db", **quiet)
    grounding = yaml.safe_load((REPO / "specs" / "families" / "grounding.yaml").read_text())
    grounding["source"]["images"] = 40
    run_build(load_spec(write_spec(folder, grounding, name="grounding.yaml")), folder / "db", **quiet)
    return folder / "db"


def copy_db(db: Path, folder: Path) -> Path:
    """A private copy of a database, for a test module that adds to it."""
    import shutil

    shutil.copytree(db, folder / "db")
    return folder / "db"


@pytest.fixture
def spec_file(tmp_path):
    def make(spec: dict, name: str = "spec.yaml") -> Path:
        return write_spec(tmp_path, spec, name)

    return make
