"""Where a spec's models are: a local folder, relative to the spec file like every other path, or a Hugging
Face id. Told apart when the spec is loaded, so a build never depends on the directory it runs from, and a
folder that is missing or holds no config is one line from `forge validate`, not a hub error at build time."""

from __future__ import annotations

import os
import re
from pathlib import Path

from forge.spec.schema import ModelsPerception, Spec

# what the hub accepts as a repo id: a name, or namespace/name, of letters, digits, '-', '_' and '.'
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
MODEL_KEYS = ("depth", "grounding", "depth_check", "segmentation")  # the perception keys that may name a model


def locate(model: str, base_dir: Path) -> tuple[str, bool]:
    """(the folder, absolute, True) for a local model — a folder that exists relative to the spec file, or a
    name that can only be a path (absolute, ./ ../ ~, not a hub id, or a folder in the working directory) —,
    else (the hub id, False)."""
    path = Path(model).expanduser()
    folder = path if path.is_absolute() else base_dir / path
    explicit = (model.startswith(("/", "./", "../", "~", ".\\")) or not _HUB_ID.match(model)
                or path.is_dir())  # a folder of that name here: meant as a path, but from the wrong folder
    if folder.is_dir() or explicit:
        return str(folder.resolve()), True
    return model, False


def folder_problem(model: str, folder: str, base_dir: Path) -> str | None:
    """Why a local model folder cannot be loaded (one line), or None."""
    path = Path(folder)
    if not path.is_dir():
        moved = Path(model).expanduser()
        hint = (f" ({moved.resolve()} exists: paths are relative to the spec file, so write it as "
                f"{os.path.relpath(moved.resolve(), base_dir.resolve())})") if not moved.is_absolute() and moved.is_dir() else ""
        return (f"{model!r} is no folder: {folder} does not exist{hint}; give a folder written by save_pretrained "
                "(`forge models pull ID --to DIR`), relative to the spec file, or a Hugging Face id")
    if not (path / "config.json").is_file():
        return f"{model!r}: {folder} has no config.json; give a folder written by save_pretrained (`forge models pull`)"
    return None


def resolve_models(spec: Spec, base_dir: Path) -> tuple[Spec, list[tuple[tuple[str, ...], str]]]:
    """The spec with each local model as its absolute folder, and the problems of those folders as
    (key path, message)."""
    perception = spec.perception
    if not isinstance(perception, ModelsPerception):
        return spec, []
    update, problems = {}, []
    for key in MODEL_KEYS:
        settings = getattr(perception, key)
        model = getattr(settings, "model", None)
        if model is None:
            continue
        located, local = locate(model, base_dir)
        if not local:
            continue
        problem = folder_problem(model, located, base_dir)
        if problem is not None:
            problems.append((("perception", key, "model"), problem))
        update[key] = settings.model_copy(update={"model": located})
    return spec.model_copy(update={"perception": perception.model_copy(update=update)}), problems
