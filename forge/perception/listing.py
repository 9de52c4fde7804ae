"""The images a model source names, listed lazily in a fixed order: no build holds the whole listing.

A folder is walked one directory at a time (names sorted, so the order is that of the sorted paths);
a URL list is read line by line; a table a batch of rows at a time (`image_tables.py`); tar shards
one shard index at a time (`shards.py`). Each entry is a URI and the metadata the source carries
for it (`source.metadata`), or None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatchcase
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

from forge.errors import ForgeError
from forge.perception.paths import expand
from udfs.images import REMOTE
from forge.spec.schema import HfSource, ImagesSource, TableSource, UrlsSource, WebDatasetSource

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}

Entry = tuple[str, "dict | None"]


@dataclass(frozen=True)
class Listing:
    """A source's images: `total` of them (for progress; rows without an image may make it an
    overcount), yielded by `entries()` in the same order on every call."""

    total: int
    entries: Callable[[], Iterator[Entry]]

    def windows(self, size: int, limit: int | None = None) -> Iterator[list[Entry]]:
        """The first `limit` entries (all without one) in lists of `size`; reading stops at the limit."""
        entries = self.entries() if limit is None else islice(self.entries(), limit)
        while window := list(islice(entries, size)):
            yield window


def listing(source: ImagesSource | UrlsSource | TableSource | HfSource | WebDatasetSource, base_dir: Path) -> Listing:
    """The listing of a model source; ForgeError (one line naming the key) when it names no image."""
    if isinstance(source, WebDatasetSource):
        from forge.perception.shards import entries, shard_files

        shards = shard_files(base_dir / source.path)
        total = sum(1 for shard in shards for _ in entries(shard))
        if not total:
            raise ForgeError(f"source.path {source.path!r}: the shards hold no image members ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return Listing(total, lambda: (entry for shard in shards for entry in entries(shard, source.metadata)))
    if isinstance(source, (TableSource, HfSource)):
        from forge.perception.hf_datasets import hf_table
        from forge.perception.image_tables import ImageTable

        table = hf_table(source, base_dir) if isinstance(source, HfSource) else \
            ImageTable.open(base_dir / source.path, source.image_column, source.metadata)
        total = table.rows()
        if not total:
            raise ForgeError(f"source.path {source.path!r}: the table lists no images in column {table.column!r}")
        return Listing(total, lambda: table.entries(source.metadata))
    if isinstance(source, UrlsSource):
        path = base_dir / source.list
        total = sum(1 for _ in _url_lines(path))
        if not total:
            raise ForgeError(f"source.list {path}: lists no images; put one URL or path per line")
        return Listing(total, lambda: ((line, None) for line in _url_lines(path)))
    root = base_dir / source.path
    if root.is_dir():
        root = root.resolve()
        files: Callable[[], Iterator[str]] = lambda: _walk(root)  # noqa: E731
    elif any(ch in str(root) for ch in "*?["):
        files = _globbed(root)
    else:
        found = _resolved_files(expand(root, IMAGE_SUFFIXES))
        files = lambda: iter(found)  # noqa: E731
    total = sum(1 for _ in files())
    entries: Callable[[], Iterator[Entry]] = lambda: ((path, None) for path in files())  # noqa: E731
    if not total:
        raise ForgeError(f"source.path {source.path!r}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {base_dir}")
    return Listing(total, entries)


def _globbed(pattern: Path) -> Callable[[], Iterator[str]]:
    """The image files a glob matches, walked lazily from the folder before its first wildcard, in sorted
    path order: as `glob.glob(pattern, recursive=True)` lists them (`**` spans any folders; a wildcard
    matches no hidden name), without holding the list."""
    parts = pattern.parts
    first = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
    folder, rest = Path(*parts[:first]), parts[first:]
    if not folder.is_dir():
        return lambda: iter(())
    folder = folder.resolve()
    prefix = len(str(folder).rstrip("/")) + 1
    return lambda: (path for path in _walk(folder) if _matches(tuple(path[prefix:].split("/")), rest))


def _matches(names: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Whether a relative path (its names) matches glob components, `**` standing for any number of folders."""
    if not pattern:
        return not names
    if pattern[0] == "**":
        return any(_matches(names[i:], pattern[1:]) for i in range(len(names) + 1)
                   if not any(name.startswith(".") for name in names[:i]))
    return (bool(names) and (not names[0].startswith(".") or pattern[0].startswith("."))
            and fnmatchcase(names[0], pattern[0]) and _matches(names[1:], pattern[1:]))


def _resolved_files(paths: list[str]) -> list[str]:
    """The image files among `paths`, each folder resolved once (as a walk resolves its root), names kept."""
    folders: dict[Path, str] = {}
    out = []
    for text in paths:
        path = Path(text)
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            if path.parent not in folders:
                folders[path.parent] = str(path.parent.resolve())
            out.append(os.path.join(folders[path.parent], path.name))
    return out


def _url_lines(listing: Path) -> Iterator[str]:
    """Entries of a URL list, one per line (# starts a comment); paths resolved against the list's folder."""
    folder = str(listing.parent.resolve())
    with listing.open(encoding="utf-8") as lines:
        for line in lines:
            entry = line.strip()
            if entry and not entry.startswith("#"):
                yield entry if entry.startswith(REMOTE) else os.path.normpath(os.path.join(folder, entry))


def _walk(folder: Path | str) -> Iterator[str]:
    """Image files under `folder` (absolute), recursively, in the order of their sorted paths: a
    directory sorts as its name plus '/', so its files come where the sorted full paths put them.
    Links to folders are not followed (a link loop would never end); one folder's entries are sorted
    in memory, so a flat folder of N files holds N names while it is read."""
    try:
        with os.scandir(folder) as scan:
            items = sorted(((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e) for e in scan)
    except OSError as exc:
        raise ForgeError(f"source.path: cannot list {folder}: {exc.strerror or exc}") from None
    for name, entry in items:
        if name.endswith("/"):
            yield from _walk(entry.path)
        elif os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and entry.is_file():
            yield entry.path
