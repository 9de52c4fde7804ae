"""`source: webdataset`: images inside WebDataset tar shards, one per sample key.

A sample is the shard's files that share a key (the name up to the first dot); its image is the
member with an image extension, its metadata the `{key}.json` member. Each image is named by a URI that points at its member,
`tar:///data/shard-000012.tar?member=000123.jpg`, so lineage (shard and key) travels with every QA
row, and the bytes are read again by seeking to the member (each shard's index is read once per
process and cached).
"""

from __future__ import annotations

import json
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, quote, unquote, urlencode, urlparse

from forge.errors import ForgeError
from forge.sources.base import Listing
from forge.sources.paths import expand
from forge.sources.uris import IMAGE_SUFFIXES
from forge.spec.schema import WebDatasetSource

SCHEME = "tar://"


class WebDatasetKind:
    kind = "webdataset"

    def check(self, source: WebDatasetSource, base_dir: Path) -> None:
        shard_files(base_dir / source.path)

    def listing(self, source: WebDatasetSource, base_dir: Path) -> Listing:
        shards = shard_files(base_dir / source.path)
        total = sum(1 for shard in shards for _ in entries(shard))
        if not total:
            raise ForgeError(f"source.path {source.path!r}: the shards hold no image members ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return Listing(total, lambda: (entry for shard in shards for entry in entries(shard, source.metadata)))


def shard_files(path: Path) -> list[str]:
    """The shards a source names: a .tar file, a folder of them or a glob; ForgeError if none."""
    text = str(path)
    files = expand(path, {".tar"})
    if not files:
        raise ForgeError(f"source.path: {text} matches no tar shard (give a .tar file, a folder or a glob such as "
                         "shards/*.tar, relative to the spec file)")
    for file in files:
        try:
            _index(str(Path(file).resolve()))
        except tarfile.ReadError:  # its message has a line per compression tried
            raise ForgeError(f"source.path: {file} is not a tar archive (nor a gzip, bz2 or xz compressed one); "
                             "give WebDataset .tar shards") from None
        except (OSError, tarfile.TarError) as exc:
            raise ForgeError(f"source.path: {file} is not a readable tar shard: {' '.join(str(exc).split())[:200]}") from None
    return [str(Path(f).resolve()) for f in files]


@lru_cache(maxsize=64)
def _index(shard: str) -> dict[str, tuple[int, int]]:
    """Member name -> (offset of its data, size), read once per shard."""
    with tarfile.open(shard) as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}


def entries(shard: str, metadata: tuple[str, ...] = ()) -> Iterator[tuple[str, dict | None]]:
    """One URI per sample key that has an image member, in shard order, with the `metadata` fields of
    the sample's `{key}.json` member (null where it has none, or none that parses)."""
    images: dict[str, str] = {}
    documents: dict[str, str] = {}
    for name in _index(shard):
        key, _, extension = Path(name).name.partition(".")
        key = str(Path(name).parent / key)
        if f".{extension.lower()}" in IMAGE_SUFFIXES and key not in images:
            images[key] = name
        elif extension.lower() == "json":
            documents[key] = name
    for key, member in images.items():
        meta = None
        if metadata and key in documents:
            try:
                document = json.loads(_read(shard, documents[key]))
            except (ValueError, UnicodeDecodeError):
                document = None
            if isinstance(document, dict):
                meta = {name: document.get(name) for name in metadata}
        yield f"{SCHEME}{quote(shard)}?{urlencode({'member': member})}", meta


def _read(shard: str, member: str) -> bytes:
    index = _index(shard)
    if member not in index:
        raise OSError(f"{shard} has no member {member!r}")
    offset, size = index[member]
    with open(shard, "rb") as file:
        file.seek(offset)
        return file.read(size)


def member_bytes(uri: str) -> bytes:
    parsed = urlparse(uri)
    shard = unquote(parsed.netloc + parsed.path)
    return _read(shard, parse_qs(parsed.query)["member"][0])
