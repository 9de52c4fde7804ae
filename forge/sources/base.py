"""The one interface every image source kind implements: check a spec's source, list its images.

A listing yields entries lazily and in a fixed order, so no build holds a whole source in memory:
each entry is an image URI (a path, a URL, an object-store URI, or a URI that points into a table
cell or a tar member) and the metadata the source carries for it (`source.metadata`), or None.
How the bytes behind a URI are read is `reading.py`'s job, by the URI's scheme.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator, Protocol

Entry = tuple[str, "dict | None"]


@dataclass(frozen=True)
class Listing:
    """A source's images: `total` of them (every row, an empty one too: it is yielded, to be skipped with
    its reason), yielded by `entries()` in the same order on every call."""

    total: int
    entries: Callable[[], Iterator[Entry]]

    def windows(self, size: int, limit: int | None = None) -> Iterator[list[Entry]]:
        """The first `limit` entries (all without one) in lists of `size`; reading stops at the limit."""
        entries = self.entries() if limit is None else islice(self.entries(), limit)
        while window := list(islice(entries, size)):
            yield window


class SourceKind(Protocol):
    """One `source.kind` of a spec that names images for the models to perceive."""

    kind: str

    def check(self, source, base_dir: Path) -> None:
        """Cheap checks for `forge validate` (no full listing); ForgeError "source.<key>: message" when unusable."""

    def listing(self, source, base_dir: Path) -> Listing:
        """The source's images; ForgeError (one line naming the key) when it names none."""
