"""A local model folder is relative to the spec file, like every path of a spec, whatever the working
directory; `forge validate` (and so a build, with or without --offline) says in one line that a local model
folder is missing or holds no config, never a hub validation traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conftest import read_table, write_spec
from forge.cli import main
from helpers import models_spec, write_photos
from tiny_models import save_tiny_depth, save_tiny_owlvit


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """project/models/{depth,owl}, project/photos, project/specs/ (specs written there), project/elsewhere."""
    root = tmp_path_factory.mktemp("project")
    save_tiny_depth(root / "models" / "depth")
    save_tiny_owlvit(root / "models" / "owl")
    write_photos(root / "photos", count=3)
    (root / "specs").mkdir()
    (root / "elsewhere").mkdir()
    return root


def _spec(project, depth: str, name: str):
    spec = models_spec(depth, "../models/owl")
    spec["source"] = {"kind": "images", "path": "../photos"}
    return write_spec(project / "specs", spec, f"{name}.yaml")


def test_relative_model_folders_are_read_from_the_spec_files_folder(project, monkeypatch):
    spec = _spec(project, "../models/depth", "relative")
    monkeypatch.chdir(project / "elsewhere")  # nothing named ../models here
    db = project / "elsewhere" / "db"
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(db), "--offline"])
    assert result.exit_code == 0, result.output
    rows = read_table(db).to_pylist()
    assert rows and {r["perception"] for r in rows} == {f"depth={project / 'models' / 'depth'};grounding={project / 'models' / 'owl'}"}


@pytest.mark.parametrize("depth, says", [
    ("./models/nothing", "perception.depth.model: './models/nothing' is no folder: {specs}/models/nothing does not exist; "
                       "give a folder written by save_pretrained (`forge models pull ID --to DIR`), relative to the spec "
                       "file, or a Hugging Face id"),
    ("models/a/b", "perception.depth.model: 'models/a/b' is no folder: {specs}/models/a/b does not exist"),
    ("../photos", "perception.depth.model: '../photos': {project}/photos has no config.json; give a folder written by "
                  "save_pretrained"),
    ("models/depth", "perception.depth.model: 'models/depth' is no folder: {specs}/models/depth does not exist "
                     "({project}/models/depth exists: paths are relative to the spec file, so write it as ../models/depth)"),
])
@pytest.mark.parametrize("command", ["validate", "build", "build --offline"])
def test_a_missing_local_model_is_one_line(project, monkeypatch, depth, says, command):
    monkeypatch.chdir(project)  # where `models/depth` would be found if paths were read from the working directory
    spec = _spec(project, depth, "missing")
    args = command.split() + [str(spec)] + (["--db", str(project / "elsewhere" / "db_missing")] if "build" in command else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output and "HFValidation" not in result.output
    assert says.format(specs=project / "specs", project=project) in result.stderr, result.stderr


@pytest.mark.parametrize("offline", [[], ["--offline"]])
def test_a_name_the_hub_refuses_is_one_line(project, offline):
    spec = _spec(project, "org/two--dashes", "refused")  # looks like an id, but the hub's rules refuse it
    result = CliRunner().invoke(main, ["build", str(spec), "--db", str(project / "elsewhere" / "db_refused"), *offline])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "HFValidation" not in result.output
    assert "model 'org/two--dashes': " in result.stderr and "it is not a Hugging Face id (org/name)" in result.stderr
