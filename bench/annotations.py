"""Staging an annotation file at Objects365's size, in bounded memory (issue 23).

Fabricates an Objects365-shaped COCO JSON (images, then annotations, then categories) and the same boxes as
Open Images CSVs, then stages each the way `forge build` does (`forge.sources.annotated.stage`: one
streaming read into Parquet, then DuckDB groups the boxes by image under a memory limit, spilling to
disk) in a process of its own, and prints the time (wall, and the CPU time of the whole child process: the machine may be shared), the
peak RSS and the rows staged. A second, smaller
size shows whether the peak grows with the file. Then it reads the staged table back a window at a time,
as a build does, and prints images/s. First, the annotation path's cost per image in a build (decoding
photos, depth maps and masks) on rendered scenes.

    python bench/annotations.py                      # 1.7M images x 15 boxes (25.5M), and 1/8 of that
    python bench/annotations.py --images 200000 --scenes 200   # a quicker look
    python bench/annotations.py stage DIR FORMAT     # one staging run (the child process), JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from annotated_data import write_big_coco, write_big_openimages  # noqa: E402  (one generator for test and bench)


def source_of(folder: Path, fmt: str):
    """The spec source of the generated files in `folder`."""
    from forge.spec.schema import AnnotationsSource

    if fmt == "coco":
        return AnnotationsSource(kind="annotations", instances="instances.json", images="images")
    return AnnotationsSource(kind="annotations", boxes="boxes.csv", classes="classes.csv", images="images")


def stage_once(folder: Path, fmt: str) -> dict:
    """Stage `folder`'s file into a fresh database; what it took (runs in the child process)."""
    from forge.perception.annotations import check_image
    from forge.sources.annotated import stage

    db = folder / f"db_{fmt}"
    shutil.rmtree(db, ignore_errors=True)
    start = time.perf_counter()
    staged = stage(source_of(folder, fmt), folder, db, check_image)
    seconds = time.perf_counter() - start
    read_start, images = time.perf_counter(), 0
    for first in range(0, staged.rows, 10_000):  # a build's windows
        images += staged.read(first, first + 10_000).num_rows
    read_seconds = time.perf_counter() - read_start
    shutil.rmtree(db, ignore_errors=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "summary": staged.summary,
            "read_seconds": read_seconds, "read_images": images, "peak_bytes": peak_rss()}


def peak_rss() -> int:
    """This process's peak RSS in bytes (VmHWM: unlike ru_maxrss, not inherited from the parent at fork)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024


def staged_in_child(folder: Path, fmt: str) -> dict:
    """`stage_once` in a process of its own, so its peak RSS is its own."""
    out = subprocess.run([sys.executable, __file__, "stage", str(folder), fmt], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    return json.loads(out.stdout.splitlines()[-1])


def generate(folder: Path, images: int, boxes: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    start = time.perf_counter()
    sizes = {"coco": write_big_coco(folder / "instances.json", images, boxes),
             "openimages": write_big_openimages(folder, images, boxes)}
    print(f"  generated {images:,} images x {boxes} boxes in {time.perf_counter() - start:.0f} s: "
          f"COCO JSON {sizes['coco'] / 2**30:.2f} GiB, Open Images CSV {sizes['openimages'] / 2**30:.2f} GiB",
          flush=True)
    return sizes


def per_image(count: int, work: Path) -> None:
    """The annotation path's cost per image in a build (`perception: annotations`): decoding the photo,
    its 16-bit PNG depth map and its RLE masks, lifting and judging, on rendered 320x240 scenes."""
    from conftest import demo_dict, write_spec
    from scene_data import make_dataset, use_annotations

    from forge.build import run_build
    from forge.spec.load import load_spec

    make_dataset(work / "data", "png16_mm", count=count, masks=True, objects=(4, 9))
    report = run_build(load_spec(write_spec(work, use_annotations(demo_dict(), "png16_mm"))), work / "db",
                       echo=lambda _: None)
    seconds = {stage.name: stage.seconds for stage in report.stages.stages}
    print(f"  per image (perception: annotations, PNG depth maps and RLE masks, {count:,} rendered 320x240 scenes): "
          f"perceive {count / seconds['perceive']:,.0f} images/s, whole build {count / sum(seconds.values()):,.0f} "
          f"images/s ({report.qa_rows:,} QA rows)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_700_000)
    parser.add_argument("--boxes", type=int, default=15, help="boxes per image (Objects365: ~14.7)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the generated files (default: a temp)")
    parser.add_argument("--scenes", type=int, default=2_000, help="rendered scenes for the per-image cost (0: skip)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, Python {platform.python_version()}")
    if args.scenes:
        with tempfile.TemporaryDirectory(dir=args.work) as tmp:
            per_image(args.scenes, Path(tmp))
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for images in (args.images // 8, args.images):
            folder = Path(tmp) / str(images)
            sizes = generate(folder, images, args.boxes)
            for fmt in ("coco", "openimages"):
                r = staged_in_child(folder, fmt)
                s = r["summary"]
                print(f"  {fmt:10} {sizes[fmt] / 2**30:5.2f} GiB file: staged {s['images']:,} images, "
                      f"{s['boxes']:,} boxes in {r['seconds']:.0f} s ({s['images'] / r['seconds']:,.0f} images/s; "
                      f"{r['cpu_seconds']:.0f} CPU-s in all), "
                      f"peak {r['peak_bytes'] / 2**30:.2f} GiB; read back in windows: {r['read_images']:,} images "
                      f"in {r['read_seconds']:.1f} s ({r['read_images'] / r['read_seconds']:,.0f} images/s)",
                      flush=True)
            shutil.rmtree(folder)


if __name__ == "__main__":
    if sys.argv[1:2] == ["stage"]:
        print(json.dumps(stage_once(Path(sys.argv[2]), sys.argv[3])))
    else:
        main()
