"""`source: urls`: a text file listing one image per line: an http(s) URL, an object-store URI or a path.

Lines are read lazily (`#` starts a comment); a path is resolved against the list's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from forge.errors import ForgeError
from forge.sources.base import Listing
from forge.sources.uris import scheme_of
from forge.spec.schema import UrlsSource


class UrlList:
    kind = "urls"

    def check(self, source: UrlsSource, base_dir: Path) -> None:
        if not (base_dir / source.list).is_file():
            raise ForgeError(f"source.list: {base_dir / source.list} does not exist (a text file of URLs or paths, "
                             "relative to the spec file)")

    def listing(self, source: UrlsSource, base_dir: Path) -> Listing:
        path = base_dir / source.list
        total = sum(1 for _ in _url_lines(path))
        if not total:
            raise ForgeError(f"source.list {path}: lists no images; put one URL or path per line")
        return Listing(total, lambda: ((line, None) for line in _url_lines(path)))


def _url_lines(listing: Path) -> Iterator[str]:
    """Entries of a URL list, one per line (# starts a comment); paths resolved against the list's folder,
    any URI kept as it is (one its scheme forge does not read is then a skipped image with that reason)."""
    folder = str(listing.parent.resolve())
    with listing.open(encoding="utf-8") as lines:
        for line in lines:
            entry = line.strip()
            if entry and not entry.startswith("#"):
                yield entry if scheme_of(entry) else os.path.normpath(os.path.join(folder, entry))
