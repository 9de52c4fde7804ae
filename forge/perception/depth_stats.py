"""Object depth from a depth map: a low percentile of the depth over the object's pixels.

Why a low ("front-surface") percentile: inside an object's region the object is usually the
nearest surface, while background and ground behind it fill the rest. The median mixes them; the
minimum follows single noisy pixels. The 10th percentile tracks the object's front and ignores up
to 10% of outliers.

Which pixels (`objects.depth_from`):
- `mask`: the object's mask, when it has one — its own pixels, whatever covers its box;
- `box_visible` (occlusion-aware, the default without a mask): the box minus the boxes of the
  objects that may be in front of it (`_in_front`: decided from the surface seen where two boxes
  overlap, against each object's own depth where no other box reaches). An object whose box is
  covered more than `verify.max_occlusion` by such boxes is dropped by the `occluded` rule, since
  what is left of it may be too little to measure;
- `box`: the whole box, as peers do — wrong whenever a nearer object covers part of it.
"""

from __future__ import annotations

import math

import numpy as np

_EDGE_EPS = 1e-6


def box_to_pixels(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """Normalized (x1, y1, x2, y2) -> integer pixel bounds covering the box, at least 1 px wide."""
    x1 = min(max(math.floor(box[0] * width + _EDGE_EPS), 0), width - 1)
    y1 = min(max(math.floor(box[1] * height + _EDGE_EPS), 0), height - 1)
    x2 = max(min(math.ceil(box[2] * width - _EDGE_EPS), width), x1 + 1)
    y2 = max(min(math.ceil(box[3] * height - _EDGE_EPS), height), y1 + 1)
    return x1, y1, x2, y2


def region(box: tuple[float, float, float, float], shape: tuple[int, int], grow: int = 0) -> np.ndarray:
    """A box's pixels (grown by `grow` on every side) as a boolean mask over a map of `shape`."""
    height, width = shape
    x1, y1, x2, y2 = box_to_pixels(box, width, height)
    out = np.zeros(shape, dtype=bool)
    out[max(y1 - grow, 0):y2 + grow, max(x1 - grow, 0):x2 + grow] = True
    return out


def _percentile(depth: np.ndarray, pixels: np.ndarray, percentile: float) -> float | None:
    values = depth[pixels]
    values = values[np.isfinite(values) & (values > 0)].astype(np.float64)
    return float(np.percentile(values, percentile)) if values.size else None


def _spread(depth: np.ndarray, pixels: np.ndarray) -> float | None:
    values = depth[pixels]
    values = values[np.isfinite(values) & (values > 0)].astype(np.float64)
    if values.size == 0:
        return None
    p25, p50, p75 = np.percentile(values, [25, 50, 75])
    return float((p75 - p25) / p50)


def _central(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return x1 + w / 4, y1 + h / 4, x2 - w / 4, y2 - h / 4


SAME_SURFACE = 0.03  # relative depth difference within which an overlap's surface is an object's own
MIN_EVIDENCE_PX = 4  # pixels an overlap needs before it says which object is in front


def _in_front(depth: np.ndarray, boxed: list[np.ndarray], grown: list[np.ndarray], claimed: np.ndarray,
              own: list[float | None], percentile: float) -> list[set[int]]:
    """For each object, the objects that may be in front of it: for every pair of overlapping boxes,
    the surface seen where only those two boxes overlap is the nearer object's. It is j's when it
    matches j's own depth (measured where no other box reaches), and i's when it is clearly nearer
    than j's; when it says neither (no such pixels, no own depths), or the boxes only touch (an
    annotated box ends where the object is hidden), each counts as in front of the other."""
    n = len(boxed)
    ahead: list[set[int]] = [set() for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            both = boxed[i] & boxed[j]
            if not both.any():
                if (grown[i] & boxed[j]).any():  # boxes that touch: where one ends the other may hide it
                    ahead[i].add(j)
                    ahead[j].add(i)
                continue
            evidence = both & (claimed == 2)
            seen = _percentile(depth, evidence, percentile) if evidence.sum() >= MIN_EVIDENCE_PX else None
            front = None
            for near, far in ((i, j), (j, i)):
                if seen is None:
                    break
                if own[near] is not None and abs(seen - own[near]) <= SAME_SURFACE * own[near] and (
                        own[far] is None or seen < own[far] * (1 - SAME_SURFACE)):
                    front = near
                elif own[far] is not None and seen < own[far] * (1 - SAME_SURFACE) and own[near] is None:
                    front = near
                if front is not None:
                    break
            if front is None:
                ahead[i].add(j)
                ahead[j].add(i)
            else:
                ahead[j if front == i else i].add(front)
    return ahead


def measure(depth: np.ndarray, boxes: list[tuple[float, float, float, float]], masks: list[np.ndarray | None],
            percentile: float, depth_from: str) -> tuple[list[dict], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per object of one image: depth, depth_spread, occlusion (fraction of its box under the boxes of
    objects that may be in front of it) and depth_source, from the pixels `depth_from` names; and those
    pixels, as (object index, row, column) arrays, for lifting. `masks` are at the depth map's resolution
    (None where an object has none)."""
    shape = depth.shape
    boxed = [region(box, shape) for box in boxes]
    claimed = np.zeros(shape, dtype=np.int32)
    for pixels in boxed:
        claimed += pixels
    own = [_percentile(depth, b & (claimed == 1), percentile) if (b & (claimed == 1)).sum() >= MIN_EVIDENCE_PX
           else None for b in boxed]
    grown = [region(box, shape, grow=1) for box in boxes]
    ahead = _in_front(depth, boxed, grown, claimed, own, percentile)
    out, used = [], []
    for i, (box, pixels) in enumerate(zip(boxes, boxed)):
        nearer = np.zeros(shape, dtype=bool)
        reach = np.zeros(shape, dtype=bool)
        for j in ahead[i]:
            nearer |= boxed[j]
            reach |= grown[j]
        covered = float((pixels & reach).sum() / max(pixels.sum(), 1))
        mask = masks[i] if depth_from == "auto" and i < len(masks) else None
        if mask is not None and mask.any():
            source, chosen, central = "mask", mask, mask
        elif depth_from == "box":
            source, chosen, central = "box", pixels, region(_central(box), shape)
        else:
            source, chosen = "box_visible", pixels & ~nearer
            central = region(_central(box), shape) & ~nearer
        out.append({"depth": _percentile(depth, chosen, percentile), "depth_spread": _spread(depth, central),
                    "occlusion": covered, "depth_source": source})
        used.append(chosen)
    if not used:
        return out, (np.zeros(0, dtype=np.int64),) * 3
    owner, rows, cols = np.nonzero(np.stack(used))
    return out, (owner, rows, cols)


def object_depth(depth: np.ndarray, box: tuple[float, float, float, float], percentile: float) -> float | None:
    """Percentile of valid (finite, > 0) depth inside a normalized box; None when nothing is valid."""
    return _percentile(depth, region(box, depth.shape), percentile)
