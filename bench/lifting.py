"""What lifting objects to 3D costs per image: the floor fit and the lift itself, on depth maps of the
size model perception stores (long side 256) and at full render size, with masks and with boxes.

Cluttered synthetic scenes seen by varied cameras (4-9 objects each) are rendered first; then, per image,
`gravity.fit_floor` and `lifting.lift` are timed alone (the rest of the record, object depth and
occlusion, is timed as `depth_stats.measure` beside them for scale). Lifting is numpy on the CPU worker
that builds the record; there is no device step to time.

Usage: python bench/lifting.py [--images 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from forge.perception.depth_stats import BoxLayout, measure  # noqa: E402
from forge.perception.gravity import fit_floor  # noqa: E402
from forge.perception.lifting import lift  # noqa: E402
from forge.perception.synthetic_scene import render_scene  # noqa: E402


def _case(scene, long_side: int, masks: bool):
    """The depth map, intrinsics, boxes and masks of a scene at a stored resolution."""
    height, width = scene.depth.shape
    scale = min(1.0, long_side / max(width, height))
    rows, cols = max(1, round(height * scale)), max(1, round(width * scale))
    depth = np.asarray(Image.fromarray(scene.depth).resize((cols, rows), Image.NEAREST))
    fx, fy, cx, cy = scene.intrinsics
    intrinsics = (fx * cols / width, fy * rows / height, cx * cols / width, cy * rows / height)
    boxes = [(x1 / width, y1 / height, x2 / width, y2 / height) for x1, y1, x2, y2 in (o.box_px for o in scene.objects)]
    shown = [np.asarray(Image.fromarray(scene.mask(i)).resize((cols, rows), Image.NEAREST)) if masks else None
             for i in range(len(scene.objects))]
    return depth, intrinsics, boxes, shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, numpy {np.__version__}")
    scenes = [render_scene(11, i, 640, 480, 4, 9, camera="varied") for i in range(args.images)]
    objects = sum(len(s.objects) for s in scenes)
    print(f"{args.images} scenes of 640x480, {objects / args.images:.1f} objects each")
    print("| depth map | pixels from | measure (depth, occlusion) ms | floor fit ms | lift ms | lift + fit per object ms |")
    print("|---|---|---|---|---|---|")
    for long_side in (256, 640):
        for masks in (True, False):
            cases = [_case(s, long_side, masks) for s in scenes]
            timings = np.zeros(3)
            for depth, intrinsics, boxes, shown in cases:
                start = time.perf_counter()
                measured, pixels = measure(depth, boxes, shown, 10.0, "auto")
                middle = time.perf_counter()
                gravity = fit_floor(depth, intrinsics, BoxLayout(boxes, depth.shape).covered())
                fitted = time.perf_counter()
                fronts = np.array([m["depth"] if m["depth"] is not None else np.nan for m in measured])
                lift(depth, intrinsics, *pixels, fronts, np.array([m["depth_source"] == "mask" for m in measured]), gravity)
                timings += (middle - start, fitted - middle, time.perf_counter() - fitted)
            per_image = timings / len(cases) * 1000
            print(f"| {cases[0][0].shape[1]}x{cases[0][0].shape[0]} | {'masks' if masks else 'boxes'} | {per_image[0]:.1f} | "
                  f"{per_image[1]:.1f} | {per_image[2]:.1f} | {(per_image[1] + per_image[2]) * args.images / objects:.2f} |")


if __name__ == "__main__":
    main()
