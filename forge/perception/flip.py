"""Horizontal-flip consistency: match each detection to its detection in the mirrored image.

A trustworthy object is found again in the mirrored picture (same label, overlapping box once
mirrored back), and its depth there can be compared with the original. The rule built on this
(`verify.flip_consistency`) asks that depth order agrees and left/right inverts.
"""

from __future__ import annotations

import numpy as np

from forge.perception.depth_stats import object_depth

MATCH_IOU = 0.5

Box = tuple[float, float, float, float]


def mirror(box: Box) -> Box:
    """A box in the horizontally mirrored image (fractions of the width)."""
    x1, y1, x2, y2 = box
    return 1.0 - x2, y1, 1.0 - x1, y2


def _iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def flip_views(boxes: list[tuple[str, Box]], flipped: list[tuple[str, Box]], flipped_depth: np.ndarray,
               percentile: float) -> list[tuple[float | None, float | None]]:
    """Per original detection: (depth measured in the mirrored image, box centre x there), or Nones.

    A detection matches the same-label mirrored detection whose box, mirrored back, overlaps it
    most (IoU >= 0.5). Its depth is read from the mirrored depth map at its own mirrored box.
    """
    views = []
    for label, box in boxes:
        best, best_iou = None, MATCH_IOU
        for other_label, other in flipped:
            overlap = _iou(box, mirror(other))
            if other_label == label and overlap >= best_iou:
                best, best_iou = other, overlap
        if best is None:
            views.append((None, None))
            continue
        views.append((object_depth(flipped_depth, mirror(box), percentile), (best[0] + best[2]) / 2))
    return views
