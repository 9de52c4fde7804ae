"""Sources: where images come from, and how they are read.

One module per source kind (`folder.py` for `images`, `urls.py`, `tables.py` for `table`, `hf.py`,
`webdataset.py`), each implementing `base.SourceKind`: check a spec's source and list its images in
windows, lazily. Reading any image URI is `reading.py` (object stores and URLs: `remote.py`);
decoding `decoding.py`; content ids and dedup keys `identity.py`.
"""

from __future__ import annotations

from pathlib import Path

from forge.sources.base import Entry, Listing, SourceKind
from forge.sources.folder import FolderSource
from forge.sources.hf import HfKind
from forge.sources.tables import TableKind
from forge.sources.urls import UrlList
from forge.sources.webdataset import WebDatasetKind

KINDS: dict[str, SourceKind] = {kind.kind: kind for kind in (FolderSource(), UrlList(), TableKind(), HfKind(), WebDatasetKind())}

__all__ = ["Entry", "KINDS", "Listing", "check", "listing"]


def listing(source, base_dir: Path) -> Listing:
    """The images of a spec's image source, listed lazily; ForgeError (one line naming the key) when it names none."""
    return KINDS[source.kind].listing(source, base_dir)


def check(source, base_dir: Path) -> None:
    """`forge validate`'s check of an image source (no full listing); ForgeError "source.<key>: message"."""
    KINDS[source.kind].check(source, base_dir)
