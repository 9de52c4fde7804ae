"""What a duplicate or a skipped row of a model source costs a build (issue 26): `forge build` over a table of
`--rows` image paths of which a share (`--share`, 90%) are copies of earlier rows, or paths to missing files,
against the same build over the distinct images alone.

Each build runs `forge build` in its own process (tiny random-weight models from tests/tiny_models.py,
`--chunk-size 20000`), all into one database, so the perception cache is shared: a first build of the
distinct images fills it and is not reported; then each measured build runs no model and what is left is
the cost of the rows themselves. Copies are interleaved (row i is image i mod D), so every window after the
first holds only copies of images of earlier windows, the hard case. Time is the build's own `time` line;
peak memory the process's max RSS (GNU time).

    python bench/source_rows.py                       # 1,000,000 rows, 90% copies / 90% missing
    python bench/source_rows.py --share 0.99          # 1,000,000 rows over 10,000 distinct images: quicker
                                                      # (perceiving 100,000 distinct images takes most of an hour)
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from helpers import models_spec  # noqa: E402
from tiny_models import save_tiny_depth, save_tiny_owlvit  # noqa: E402

FORGE = str(Path(sys.executable).with_name("forge"))


def write_world(root: Path, rows: int, distinct: int) -> dict[str, Path]:
    """`distinct` small photos (random pixels: every one its own content id) and three tables of paths."""
    rng = np.random.default_rng(0)
    folder = root / "photos" / "0"
    for i in range(distinct):
        if i % 10_000 == 0:
            folder = root / "photos" / f"{i // 10_000:03d}"
            folder.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"{i:07d}.png")
    real = [f"photos/{i // 10_000:03d}/{i:07d}.png" for i in range(distinct)]
    tables = {"distinct": real,
              "copies": [real[i % distinct] for i in range(rows)],
              "missing": [real[i // (rows // distinct)] if i % (rows // distinct) == 0 and i // (rows // distinct) < distinct
                          else f"photos/gone/{i:07d}.png" for i in range(rows)]}
    out = {}
    for name, paths in tables.items():
        out[name] = root / f"{name}.parquet"
        pq.write_table(pa.table({"image": paths}), out[name], row_group_size=100_000)
    return out


def build(root: Path, name: str, table: Path, models: tuple[str, str]) -> dict:
    spec = models_spec(*models)
    spec["name"], spec["source"] = name, {"kind": "table", "path": table.name}
    for task in ("depth", "grounding"):
        spec["perception"][task]["batch_size"] = 64
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = subprocess.run(["/usr/bin/time", "-f", "maxrss_kib=%M", FORGE, "build", str(path), "--db", str(root / "db"),
                             "--chunk-size", "20000"], capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
    out = result.stdout
    found = {"seconds": float(re.search(r"time\s+([\d.]+) s", out).group(1)),
             "peak_gib": int(re.search(r"maxrss_kib=(\d+)", result.stderr).group(1)) / 2**20,
             "images": re.search(r"images\s+(.*)", out).group(1).strip(),
             "perception": re.search(r"perception\s+(.*)", out).group(1).strip()}
    for stage in ("identify", "models", "perceive", "count", "write"):
        match = re.search(rf"^\s+{stage}\s+([\d.]+) s", out, re.MULTILINE)
        found[stage] = float(match.group(1)) if match else 0.0
    found["skip_lines"] = sum(1 for line in out.splitlines() if line.strip().startswith("skipped "))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--share", type=float, default=0.9, help="share of the rows that are copies / missing files")
    args = parser.parse_args()
    distinct = round(args.rows * (1 - args.share))
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; {args.rows:,} rows, "
          f"{distinct:,} distinct images")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clock = time.perf_counter()
        tables = write_world(root, args.rows, distinct)
        models = str(save_tiny_depth(root / "depth")), str(save_tiny_owlvit(root / "owl"))
        print(f"wrote the photos and tables in {time.perf_counter() - clock:.0f} s")
        warm = build(root, "warm", tables["distinct"], models)
        print(f"filling the perception cache: {warm['seconds']:.1f} s ({warm['perception']})")
        rows = {}
        for name in ("distinct", "copies", "missing"):
            rows[name] = build(root, name, tables[name], models)
            r = rows[name]
            print(f"{name:9s} {r['seconds']:7.1f} s  peak {r['peak_gib']:.2f} GiB  identify {r['identify']:.1f} s, "
                  f"perceive (records) {r['perceive']:.1f} s, count {r['count']:.1f} s  | images {r['images']} | "
                  f"{r['perception']} | summary skip lines: {r['skip_lines']}")
        base = rows["distinct"]
        extra = args.rows - distinct
        for name in ("copies", "missing"):
            r = rows[name]
            print(f"per {'copied' if name == 'copies' else 'missing'} row: {(r['seconds'] - base['seconds']) / extra * 1e6:.1f} µs, "
                  f"{(r['peak_gib'] - base['peak_gib']) * 2**30 / extra:.0f} bytes of peak memory")


if __name__ == "__main__":
    main()
