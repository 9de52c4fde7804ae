"""The bytes behind an image URI, whatever its kind: one reader per URI scheme.

A local path is read from disk; http(s) and object-store URIs over the network (`remote.py`); a
`table://` URI from its table cell (`tables.py`); a `tar://` URI from its shard member
(`webdataset.py`). `Downloads` keeps a build's fetched files on disk between identification and
decoding, so each URL is fetched once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Callable

from forge.sources import remote, tables, webdataset
from forge.sources.uris import REMOTE, scheme_of

READERS: dict[str, Callable[[str], bytes]] = {tables.SCHEME: tables.cell_bytes, webdataset.SCHEME: webdataset.member_bytes,
                                              **dict.fromkeys(REMOTE, remote.fetch)}
READABLE = ", ".join(scheme.removesuffix("://") for scheme in REMOTE)  # what a user may write, for messages


def read(uri: str) -> bytes:
    """Bytes of a local path, an http(s) URL (timeout, size cap, retries of transient failures; the
    last failure raises OSError), an object-store URI (s3://, gs://, abfs://), a table cell
    (`table://`) or a shard member (`tar://`). Any other scheme (ftp://) raises OSError: it is never a path."""
    scheme = scheme_of(uri)
    if scheme is None:
        return Path(uri).read_bytes()
    if scheme not in READERS:
        raise OSError(f"{scheme.removesuffix('://')} is not a scheme forge reads: give {READABLE} URLs or local paths")
    return READERS[scheme](uri)


class Downloads:
    """Downloaded images kept on disk (`folder`) from identification to decoding, so a build fetches
    each URL once; local files, table cells and shard members are read where they are."""

    def __init__(self, folder: str | None):
        self.folder = folder

    def read(self, uri: str) -> bytes:
        if self.folder is None or not uri.startswith(REMOTE):
            return read(uri)
        path = Path(self.folder) / hashlib.sha256(uri.encode()).hexdigest()[:32]
        if path.exists():
            return path.read_bytes()
        data = read(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        part.write_bytes(data)
        part.replace(path)
        return data
