"""Listing a model source at dataset scale: seconds and peak memory to walk 1M images a window at a time.

A build reads its source lazily (forge/sources/) and keeps, per model task, one 8-byte key
per distinct image (KeySet) so a copy met later is served from the cache. This measures both at
`--images` (1M by default) on this machine, against holding the whole listing as one Python list (what
builds did before):

  - a Parquet table of 1M relative paths, read 4,096 rows at a time;
  - a URL list of 1M lines;
  - a folder tree of `--files` empty .jpg files (default 200k: a million inodes is more than a CI disk
    should hold), walked one directory at a time, as a folder and as a glob;
  - a KeySet growing by one window of 20,000 keys at a time to 1M.

Peak memory is Python's traced allocation peak (tracemalloc) while the windows are consumed.

    python bench/listing.py                 # 1M rows / lines, 200k files
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from forge.sources import listing  # noqa: E402
from forge.sources.identity import KeySet  # noqa: E402
from forge.spec.schema import ImagesSource, TableSource, UrlsSource  # noqa: E402

WINDOW = 20_000


def _peak(run) -> tuple[object, float]:
    """run()'s result and the peak MiB Python allocated while it ran (timed separately: tracing slows it)."""
    tracemalloc.start()
    try:
        return run(), tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def measure(source, root: Path) -> dict:
    """Seconds and traced peak MiB to list every entry a window at a time, then as one list."""
    found = listing(source, root)
    start = time.perf_counter()
    count = sum(len(window) for window in found.windows(WINDOW))
    windowed = time.perf_counter() - start
    _, windowed_mib = _peak(lambda: sum(len(window) for window in found.windows(WINDOW)))
    whole, whole_mib = _peak(lambda: list(found.entries()))
    assert count == len(whole) == found.total
    return {"images": count, "windowed_s": windowed, "windowed_mib": windowed_mib, "whole_mib": whole_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000, help="rows of the table and lines of the URL list")
    parser.add_argument("--files", type=int, default=200_000, help="files in the folder tree")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; window {WINDOW:,}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = [f"images/{i // 1000:04d}/{i:08d}.jpg" for i in range(args.images)]
        pq.write_table(pa.table({"image": names}), root / "paths.parquet", row_group_size=100_000)
        (root / "urls.txt").write_text("".join(f"https://example.org/{n}\n" for n in names))
        for i in range(args.files):
            folder = root / "photos" / f"{i // 1000:04d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True)
            (folder / f"{i:08d}.jpg").touch()
        del names
        sources = {"table: Parquet paths": TableSource(kind="table", path="paths.parquet"),
                   "urls: text list": UrlsSource(kind="urls", list="urls.txt"),
                   "images: folder tree": ImagesSource(kind="images", path="photos"),
                   "images: glob photos/**/*.jpg": ImagesSource(kind="images", path="photos/**/*.jpg")}
        print("| source | images | list, a window at a time: s | its peak MiB | as one list: peak MiB |")
        print("|---|---|---|---|---|")
        for name, source in sources.items():
            r = measure(source, root)
            print(f"| {name} | {r['images']:,} | {r['windowed_s']:.1f} | {r['windowed_mib']:.1f} | {r['whole_mib']:.1f} |")

    rng = np.random.default_rng(0)
    keys = KeySet()
    start = time.perf_counter()
    for _ in range(args.images // WINDOW):
        window = rng.integers(1, 2**63, WINDOW, dtype=np.uint64)
        assert not keys.has(window).any()
        keys.add(window)
    seconds = time.perf_counter() - start
    print(f"KeySet: {keys.keys.size:,} keys in {keys.keys.nbytes / 2**20:.1f} MiB; {args.images // WINDOW} windows "
          f"looked up and added in {seconds:.2f} s ({seconds / (args.images // WINDOW) * 1000:.1f} ms per window)")


if __name__ == "__main__":
    main()
