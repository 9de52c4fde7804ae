"""`source: hf`: a Hugging Face `datasets` dataset on disk, read as a table of images.

A `save_to_disk` folder holds Arrow files and `dataset_info.json` (a DatasetDict: one such folder per
split, listed in `dataset_dict.json`); a Parquet export holds Parquet files named by split (the Hub's
`data/train-00000-of-00002.parquet`, or `train/0000.parquet`) whose schema metadata carries the
features. The features name the `Image` column, so a spec needs only the path. The rows are then
read like any table (`tables.py`): a batch at a time, images named by their cell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from forge.errors import ForgeError
from forge.sources.base import Listing
from forge.sources.paths import expand
from forge.sources.tables import ImageTable
from forge.spec.schema import HfSource

KNOWN_SPLITS = {"train", "validation", "test", "val", "dev"}  # how split folders and file prefixes are recognised
T = TypeVar("T")


class HfKind:
    kind = "hf"

    def check(self, source: HfSource, base_dir: Path) -> None:
        if not (base_dir / source.path).exists() and not any(ch in source.path for ch in "*?["):
            raise ForgeError(f"source.path: {base_dir / source.path} does not exist (a datasets save_to_disk folder or a "
                             "Parquet export, relative to the spec file)")
        hf_table(source, base_dir)

    def listing(self, source: HfSource, base_dir: Path) -> Listing:
        return hf_table(source, base_dir).listing(source.path, source.metadata)


def hf_table(source: HfSource, base_dir: Path) -> ImageTable:
    """The split's table with its image column; ForgeError (one line naming the key) when unusable."""
    root = base_dir / source.path
    if (root / "dataset_dict.json").is_file():
        splits = _json(root / "dataset_dict.json", lambda d: list(d["splits"]))
        if source.split not in splits:
            raise ForgeError(f"source.split: {root} has the splits {', '.join(splits)}; not {source.split!r}")
        root = root / source.split
    if (root / "state.json").is_file():  # save_to_disk
        files = _json(root / "state.json", lambda d: [str(root / f["filename"]) for f in d["_data_files"]])
        info = root / "dataset_info.json"
        features = _json(info, lambda d: dict(d.get("features") or {})) if info.is_file() else {}
        columns = list(features)
    else:
        files = _split_files(expand(root, {".parquet"}), source.split, root)
        try:
            schema = pq.read_schema(files[0])
            features = json.loads((schema.metadata or {}).get(b"huggingface", b"{}")).get("info", {}).get("features") or {}
        except (OSError, ValueError, pa.ArrowException, AttributeError) as exc:
            raise ForgeError(f"source.path: {files[0]} is not a readable Parquet export: {' '.join(str(exc).split())[:200]}") from None
        columns = schema.names
    column = source.image_column or _image_column(features, columns, root)
    return ImageTable.of_files(files, str(root), column, source.metadata)


def _json(path: Path, take: Callable[[dict], T]) -> T:
    """What `take` reads from a JSON file of the dataset; ForgeError (one line) when it is not as datasets writes it."""
    try:
        return take(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ForgeError(f"source.path: {path} is not as `datasets` writes it ({type(exc).__name__}: {exc}); "
                         "save the dataset again with save_to_disk") from None


def _split_files(files: list[str], split: str, root: Path) -> list[str]:
    """The Parquet files of `split`: in a `{split}/` folder or named `{split}-*.parquet`; every file
    when none is named by a split."""
    if not files:
        raise ForgeError(f"source.path: {root} is neither a datasets save_to_disk folder (no state.json or "
                         "dataset_dict.json) nor a Parquet export (no .parquet file)")

    def split_of(file: str) -> str:  # train/0000.parquet, train-00000-of-00002.parquet, train.parquet: train
        path = Path(file)
        return path.parent.name if path.parent.name in KNOWN_SPLITS | {split} else re.split(r"[-.]", path.name)[0]

    chosen = [f for f in files if split_of(f) == split]
    if chosen:
        return chosen
    named = {split_of(f) for f in files} & KNOWN_SPLITS
    if named:
        raise ForgeError(f"source.split: {root} has the splits {', '.join(sorted(named))}; not {split!r}")
    return files


def _image_column(features: dict, columns: list[str], root: Path) -> str:
    """The one column the features describe as an `Image`; ForgeError naming the columns when there is none."""
    images = [name for name, feature in features.items() if isinstance(feature, dict) and feature.get("_type") == "Image"]
    if len(images) == 1:
        return images[0]
    if not images and not features:  # a Parquet file `datasets` did not write: no features to read
        raise ForgeError(f"source.path: {root} describes no dataset features (its columns: {', '.join(columns[:20])}), "
                         "so it is a plain table: use `kind: table` with `image_column` naming the images' column")
    if not images:
        raise ForgeError(f"source.image_column: {root} has no column with the Image feature (its columns: "
                         f"{', '.join(columns[:20])}); name the column that holds the images")
    raise ForgeError(f"source.image_column: {root} has several Image columns ({', '.join(images)}); choose one")
