"""WebDataset tar shards: one sample per image — `{key}.jpg|png` and `{key}.json` holding all of
the image's QA rows — as `webdataset.WebDataset(...).decode("pil").to_tuple("jpg;png", "json")`
reads them (files of a sample share the key, the name up to the first dot). `shards.txt` lists the
shards one per line, relative to the export folder (join each with the folder's path)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Iterator

from forge.export.reading import ReadSample, Unreadable, guarded, stated_sizes
from forge.export.samples import ExportOptions, Sample
from forge.export.writing import write_text

SHARD_SIZE = 1000  # images per shard
LIST = "shards.txt"
IMAGES = ("jpg", "png")


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(payload), 0  # mtime 0: the same samples give byte-identical shards
    tar.addfile(info, io.BytesIO(payload))


def write(samples: list[Sample], out: Path, options: ExportOptions) -> list[Path]:
    images: dict[str, list[Sample]] = {}
    for sample in samples:
        images.setdefault(sample.rows[0]["image_id"], []).append(sample)
    keys = list(images)
    shards = []
    for start in range(0, len(keys), SHARD_SIZE):
        shards.append(out / f"shard-{start // SHARD_SIZE:06d}.tar")
        _write_shard(shards[-1], keys[start:start + SHARD_SIZE], images)
    write_text(out / LIST, "".join(f"{s.name}\n" for s in shards))
    return shards


def _write_shard(path: Path, keys: list[str], images: dict[str, list[Sample]]) -> None:
    """One tar of samples: per image key, its image and a JSON of all its QA rows."""
    with tarfile.open(path, "w") as tar:
        for key in keys:
            group = images[key]
            image = group[0].image
            rows = [row for sample in group for row in sample.rows]
            _add(tar, f"{key}.{image.file.suffix.lstrip('.')}", image.file.read_bytes())
            record = {"image_id": key, "split": rows[0]["split"], "width": image.width, "height": image.height,
                      "qa": [{k: v for k, v in row.items() if k not in ("image_uri",)} for row in rows]}
            _add(tar, f"{key}.json", json.dumps(record, ensure_ascii=False, default=str).encode())


def _sample(shard: str, key: str, files: dict[str, bytes]) -> ReadSample:
    record = json.loads(files["json"])
    images = [files[ext] for ext in IMAGES if ext in files]
    if len(images) != 1:
        raise ValueError("not one jpg or png beside the json")
    qa = record["qa"]
    return ReadSample(shard, f"sample {key}", [row["qa_id"] for row in qa], [row["answer"] for row in qa], images[0],
                      stated_sizes(record))


def _members(tar: tarfile.TarFile) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample, as webdataset groups consecutive files that share a key."""
    key, files = None, {}
    for member in tar:
        if not member.isfile():
            continue
        stem, _, ext = member.name.rpartition("/")[2].partition(".")
        if stem != key and key is not None:
            yield key, files
            files = {}
        key, files[ext] = stem, tar.extractfile(member).read()
    if key is not None:
        yield key, files


def read(folder: Path, root: Path) -> Iterator[ReadSample]:
    """Every shard `shards.txt` lists, sample by sample; a shard that cannot be read is one problem."""
    try:
        shards = (folder / LIST).read_text(encoding="utf-8").split()
    except (OSError, ValueError) as exc:
        raise Unreadable(f"{LIST}: cannot be read ({exc}); export again") from None
    for shard in shards:
        try:
            with tarfile.open(folder / shard, "r|") as tar:
                for key, files in _members(tar):
                    yield guarded(shard, f"sample {key}", lambda: _sample(shard, key, files))
        except (OSError, EOFError, tarfile.TarError) as exc:
            yield ReadSample(shard, "", problem=f"is not a readable tar ({exc}); export again")
