"""`source: images`: image files in a folder (walked recursively), matched by a glob, or one file.

A folder is walked one directory at a time, names sorted, so the order is that of the sorted paths
and no listing of the whole tree is held; a glob is walked the same way from the folder before its
first wildcard and matched per path component.
"""

from __future__ import annotations

import glob
import os
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable, Iterator

from forge.errors import ForgeError
from forge.sources.base import Entry, Listing
from forge.sources.paths import expand
from forge.sources.uris import IMAGE_SUFFIXES
from forge.spec.schema import ImagesSource


class FolderSource:
    kind = "images"

    def check(self, source: ImagesSource, base_dir: Path) -> None:
        target = base_dir / source.path
        if not _is_glob(source.path):
            if not target.exists():
                raise ForgeError(f"source.path: {target} does not exist (a folder or a glob, relative to the spec file)")
        elif next(glob.iglob(str(target), recursive=True), None) is None:  # stops at the first match
            raise ForgeError(f"source.path: glob {str(target)!r} matches no file")

    def listing(self, source: ImagesSource, base_dir: Path) -> Listing:
        root = base_dir / source.path
        if root.is_dir():
            root = root.resolve()
            files: Callable[[], Iterator[str]] = lambda: _walk(root)  # noqa: E731
        elif _is_glob(str(root)):
            files = _globbed(root)
        else:
            found = _resolved_files(expand(root, IMAGE_SUFFIXES))
            files = lambda: iter(found)  # noqa: E731
        total = sum(1 for _ in files())
        entries: Callable[[], Iterator[Entry]] = lambda: ((path, None) for path in files())  # noqa: E731
        if not total:
            raise ForgeError(f"source.path {source.path!r}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {base_dir}")
        return Listing(total, entries)


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _globbed(pattern: Path) -> Callable[[], Iterator[str]]:
    """The image files a glob matches, walked lazily from the folder before its first wildcard, in sorted
    path order: as `glob.glob(pattern, recursive=True)` lists them (`**` spans any folders; a wildcard
    matches no hidden name), without holding the list."""
    parts = pattern.parts
    first = next(i for i, part in enumerate(parts) if _is_glob(part))
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
