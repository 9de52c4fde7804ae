"""Builds killed with SIGKILL at different moments: the db stays readable and consistent, and
re-running the same command finishes the work without duplicates or redoing finished perception."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lancedb
import pytest
from PIL import Image

from conftest import read_table, write_spec
from forge.perception.synthetic_scene import render_scene
from helpers import models_spec
from tiny_models import save_tiny_depth, save_tiny_owlvit

IMAGES = 24


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    (root / "photos").mkdir()
    for i in range(IMAGES):
        Image.fromarray(render_scene(9, i, 160, 120, 3, 5, clutter=False).rgb).save(root / "photos" / f"{i:02d}.jpg")
    spec = models_spec(str(save_tiny_depth(root / "depth")), str(save_tiny_owlvit(root / "owl")))
    spec["perception"]["depth"]["batch_size"] = spec["perception"]["grounding"]["batch_size"] = 2
    path = write_spec(root, spec)
    reference = root / "reference.lancedb"
    assert _run(path, reference).returncode == 0
    return root, path, read_table(reference)


def _command(spec: Path, db: Path) -> list[str]:
    return [sys.executable, "-m", "forge.cli", "build", str(spec), "--db", str(db), "--chunk-size", "8"]  # 3 windows


def _run(spec: Path, db: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_command(spec, db), capture_output=True, text=True, timeout=300)


def _kill_at(spec: Path, db: Path, marker: str, delay: float) -> None:
    """Start a build, wait for `marker` on its progress output, then SIGKILL it after `delay` seconds."""
    process = subprocess.Popen(_command(spec, db), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if marker in line:
            time.sleep(delay)
            break
    else:
        raise AssertionError(f"the build never printed {marker!r}: {''.join(seen)[-2000:]}")
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("marker, delay", [
    ("perceiving with depth + grounding", 1.5),  # models half-way through the images
    ("judging", 0.0),  # perception staged, nothing judged yet
    ("committing", 0.0),  # every chunk's rows written as data files, the commit under way
])
def test_killed_build_leaves_a_consistent_db_and_resumes(workspace, tmp_path, marker, delay):
    root, spec, reference = workspace
    db = tmp_path / "db"
    _kill_at(spec, db, marker, delay)
    connection = lancedb.connect(str(db))
    if "qa" in connection.list_tables().tables:
        rows = connection.open_table("qa").count_rows()
        assert rows in (0, reference.num_rows)  # never a partial build
    cached = connection.open_table("perception_depth").count_rows() if "perception_depth" in connection.list_tables().tables else 0
    assert 0 <= cached <= IMAGES

    finished = _run(spec, db)
    assert finished.returncode == 0, finished.stderr
    assert f"depth: {IMAGES - cached} run, {cached} cached" in finished.stdout  # finished perception is not redone
    assert read_table(db).equals(reference)


def test_readers_see_the_previous_version_while_a_rebuild_runs(workspace, tmp_path):
    import yaml

    root, spec, reference = workspace
    db = tmp_path / "db"
    assert _run(spec, db).returncode == 0
    edited = yaml.safe_load(spec.read_text())
    edited["families"][0]["questions"][0]["templates"][0] = "Which one is nearer, the {a} or the {b}?"
    new_spec = write_spec(root, edited, name="edited.yaml")  # beside photos/, which the spec names
    _kill_at(new_spec, db, "committing", 0.0)
    assert read_table(db).equals(reference)  # the interrupted rebuild changed nothing
    assert _run(new_spec, db).returncode == 0
    table = read_table(db)
    assert table.num_rows == reference.num_rows
    assert set(table.column("spec_hash").to_pylist()) != set(reference.column("spec_hash").to_pylist())
