"""Scratch space for a query that spills to disk.

DuckDB spills big sorts, joins and aggregates to its `temp_directory`, by default `.tmp` in the working
directory: files dropped wherever the user stood, left there when the query was killed, and a failure in
a read-only folder. Here each query gets its own folder inside the database (on the disk that holds the
data), removed when the query ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

SPILL_FOLDER = ".forge-tmp"


def _alive(pid: int) -> bool:
    """Whether a process with this id runs here (one we may not signal runs too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


@contextmanager
def spill_folder(db: Path) -> Iterator[Path]:
    """A private folder for DuckDB's spill files, removed afterwards: `<db>/.forge-tmp/query-<host>-<pid>-*`
    (the system's temporary folder when the database is read-only). Folders of this host's queries that
    were killed are swept first."""
    parent, host = db / SPILL_FOLDER, socket.gethostname().replace("-", "_")
    try:
        parent.mkdir(exist_ok=True)
        for stale in parent.glob(f"query-{host}-*-*"):
            pid = stale.name.split("-")[2]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix=f"query-{host}-{os.getpid()}-", dir=parent))
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix="forge-query-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with suppress(OSError):
            parent.rmdir()  # fails while another query still spills there, as it should
