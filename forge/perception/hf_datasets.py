"""`source: hf`: a Hugging Face `datasets` dataset on disk, read as a table of images.

A `save_to_disk` folder holds Arrow files and `dataset_info.json` (a DatasetDict: one such folder per
split, listed in `dataset_dict.json`); a Parquet export holds Parquet files named by split (the Hub's
`data/train-00000-of-00002.parquet`, or `train/0000.parquet`) whose schema metadata carries the
features. The features name the `Image` column, so a spec needs only the path. The rows are then
read like any table (`image_tables.py`): a batch at a time, images named by their cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from forge.errors import ForgeError
from forge.perception.image_tables import ImageTable
from forge.perception.paths import expand
from forge.spec.schema import HfSource

KNOWN_SPLITS = {"train", "validation", "test", "val", "dev"}  # how split folders and file prefixes are recognised


def hf_table(source: HfSource, base_dir: Path) -> ImageTable:
    """The split's table with its image column; ForgeError (one line naming the key) when unusable."""
    root = base_dir / source.path
    if (root / "dataset_dict.json").is_file():
        splits = json.loads((root / "dataset_dict.json").read_text())["splits"]
        if source.split not in splits:
            raise ForgeError(f"source.split: {root} has the splits {', '.join(splits)}; not {source.split!r}")
        root = root / source.split
    if (root / "state.json").is_file():  # save_to_disk
        files = [str(root / f["filename"]) for f in json.loads((root / "state.json").read_text())["_data_files"]]
        info = root / "dataset_info.json"
        features = json.loads(info.read_text()).get("features") or {} if info.is_file() else {}
    else:
        files = _split_files(expand(root, {".parquet"}), source.split, root)
        metadata = pq.read_schema(files[0]).metadata or {}
        features = json.loads(metadata.get(b"huggingface", b"{}")).get("info", {}).get("features") or {}
    column = source.image_column or _image_column(features, root)
    return ImageTable.of_files(files, str(root), column, source.metadata)


def _split_files(files: list[str], split: str, root: Path) -> list[str]:
    """The Parquet files of `split`: in a `{split}/` folder or named `{split}-*.parquet`; every file
    when none is named by a split."""
    if not files:
        raise ForgeError(f"source.path: {root} is neither a datasets save_to_disk folder (no state.json or "
                         "dataset_dict.json) nor a Parquet export (no .parquet file)")

    def split_of(file: str) -> str:
        path = Path(file)
        return path.parent.name if path.parent.name in KNOWN_SPLITS | {split} else path.name.split("-")[0]

    chosen = [f for f in files if split_of(f) == split]
    if chosen:
        return chosen
    named = {split_of(f) for f in files} & KNOWN_SPLITS
    if named:
        raise ForgeError(f"source.split: {root} has the splits {', '.join(sorted(named))}; not {split!r}")
    return files


def _image_column(features: dict, root: Path) -> str:
    images = [name for name, feature in features.items() if isinstance(feature, dict) and feature.get("_type") == "Image"]
    if len(images) == 1:
        return images[0]
    if not images:
        raise ForgeError(f"source.image_column: {root} has no column with the Image feature (its columns: "
                         f"{', '.join(list(features)[:20]) or 'none described'}); name the column that holds the images")
    raise ForgeError(f"source.image_column: {root} has several Image columns ({', '.join(images)}); choose one")
