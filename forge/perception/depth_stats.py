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
MAX_OBJECTS = 256  # objects measured per image; beyond it an image is a crowd, not a scene (the rest are left out)

Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels of the depth map, x2/y2 exclusive


class BoxLayout:
    """The boxes of one image on its depth map: each box's pixel rectangle and, per pixel, how many boxes
    cover it. Everything after is read inside the boxes, so the cost follows the pixels the boxes cover,
    not the number of objects times the image size."""

    def __init__(self, boxes: list[tuple[float, float, float, float]], shape: tuple[int, int]):
        height, width = shape
        self.shape = shape
        self.rects: list[Rect] = [box_to_pixels(box, width, height) for box in boxes]
        corners = np.zeros((height + 1, width + 1), dtype=np.int32)
        if self.rects:
            r = np.array(self.rects)
            np.add.at(corners, (r[:, 1], r[:, 0]), 1)
            np.add.at(corners, (r[:, 1], r[:, 2]), -1)
            np.add.at(corners, (r[:, 3], r[:, 0]), -1)
            np.add.at(corners, (r[:, 3], r[:, 2]), 1)
        self.claimed = corners.cumsum(axis=0).cumsum(axis=1)[:height, :width]  # boxes covering each pixel

    def covered(self) -> np.ndarray:
        """The pixels inside any box."""
        return self.claimed > 0

    def grown(self, i: int) -> Rect:
        x1, y1, x2, y2 = self.rects[i]
        height, width = self.shape
        return max(x1 - 1, 0), max(y1 - 1, 0), min(x2 + 1, width), min(y2 + 1, height)

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(i, j, overlapping) for every pair i < j whose boxes overlap or touch (one grown by a pixel meets
        the other), found with array arithmetic rather than a loop over all pairs."""
        if len(self.rects) < 2:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty.astype(bool)
        r = np.array(self.rects)
        g = np.array([self.grown(i) for i in range(len(self.rects))])
        i, j = np.triu_indices(len(r), k=1)
        meets = (np.minimum(g[i, 2], r[j, 2]) > np.maximum(g[i, 0], r[j, 0])) & \
                (np.minimum(g[i, 3], r[j, 3]) > np.maximum(g[i, 1], r[j, 1]))
        i, j = i[meets], j[meets]
        overlapping = (np.minimum(r[i, 2], r[j, 2]) > np.maximum(r[i, 0], r[j, 0])) & \
                      (np.minimum(r[i, 3], r[j, 3]) > np.maximum(r[i, 1], r[j, 1]))
        return i, j, overlapping


def _intersection(a: Rect, b: Rect) -> Rect | None:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def _in_front(depth: np.ndarray, layout: BoxLayout, own: list[float | None], percentile: float) -> list[set[int]]:
    """For each object, the objects that may be in front of it: for every pair of overlapping boxes,
    the surface seen where only those two boxes overlap is the nearer object's. It is j's when it
    matches j's own depth (measured where no other box reaches), and i's when it is clearly nearer
    than j's; when it says neither (no such pixels, no own depths), or the boxes only touch (an
    annotated box ends where the object is hidden), each counts as in front of the other."""
    ahead: list[set[int]] = [set() for _ in layout.rects]
    for i, j, overlapping in zip(*(a.tolist() for a in layout.pairs())):
        front = None
        if overlapping:
            x1, y1, x2, y2 = _intersection(layout.rects[i], layout.rects[j])
            evidence = layout.claimed[y1:y2, x1:x2] == 2
            seen = _percentile(depth[y1:y2, x1:x2], evidence, percentile) if evidence.sum() >= MIN_EVIDENCE_PX else None
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


def _under(layout: BoxLayout, rect: Rect, others: set[int], grown: bool) -> np.ndarray:
    """Within `rect`, the pixels under the boxes (grown by a pixel, when `grown`) of `others`."""
    x1, y1, x2, y2 = rect
    out = np.zeros((y2 - y1, x2 - x1), dtype=bool)
    for j in others:
        hit = _intersection(rect, layout.grown(j) if grown else layout.rects[j])
        if hit is not None:
            out[hit[1] - y1:hit[3] - y1, hit[0] - x1:hit[2] - x1] = True
    return out


def measure(depth: np.ndarray, boxes: list[tuple[float, float, float, float]], masks: list[np.ndarray | None],
            percentile: float, depth_from: str) -> tuple[list[dict], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per object of one image: depth, depth_spread, occlusion (fraction of its box under the boxes of
    objects that may be in front of it) and depth_source, from the pixels `depth_from` names; and those
    pixels, as (object index, row, column) arrays, for lifting. `masks` are at the depth map's resolution
    (None where an object has none). Work is done inside each box (`BoxLayout`)."""
    layout = BoxLayout(boxes, depth.shape)
    own = []
    for x1, y1, x2, y2 in layout.rects:
        alone = layout.claimed[y1:y2, x1:x2] == 1
        own.append(_percentile(depth[y1:y2, x1:x2], alone, percentile) if alone.sum() >= MIN_EVIDENCE_PX else None)
    ahead = _in_front(depth, layout, own, percentile)
    out, owners, rows, cols = [], [], [], []
    for i, (box, rect) in enumerate(zip(boxes, layout.rects)):
        x1, y1, x2, y2 = rect
        window = depth[y1:y2, x1:x2]
        nearer = _under(layout, rect, ahead[i], grown=False)
        covered = float(_under(layout, rect, ahead[i], grown=True).mean())
        cx1, cy1, cx2, cy2 = box_to_pixels(_central(box), depth.shape[1], depth.shape[0])
        central = np.zeros(window.shape, dtype=bool)
        central[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1] = True
        mask = masks[i] if depth_from == "auto" and i < len(masks) else None
        if mask is not None and mask.any():
            source = "mask"
            picked_rows, picked_cols = np.nonzero(mask)
            values = depth[picked_rows, picked_cols]
            spread = _spread(values, np.ones(values.shape, bool))
            depth_value = _percentile(values, np.ones(values.shape, bool), percentile)
        else:
            source, chosen = ("box", np.ones(window.shape, bool)) if depth_from == "box" else ("box_visible", ~nearer)
            spread = _spread(window, central if depth_from == "box" else central & ~nearer)
            depth_value = _percentile(window, chosen, percentile)
            local_rows, local_cols = np.nonzero(chosen)
            picked_rows, picked_cols = local_rows + y1, local_cols + x1
        out.append({"depth": depth_value, "depth_spread": spread, "occlusion": covered, "depth_source": source})
        owners.append(np.full(picked_rows.size, i, dtype=np.int64))
        rows.append(picked_rows)
        cols.append(picked_cols)
    if not out:
        return out, (np.zeros(0, dtype=np.int64),) * 3
    return out, (np.concatenate(owners), np.concatenate(rows), np.concatenate(cols))


def object_depth(depth: np.ndarray, box: tuple[float, float, float, float], percentile: float) -> float | None:
    """Percentile of valid (finite, > 0) depth inside a normalized box; None when nothing is valid."""
    return _percentile(depth, region(box, depth.shape), percentile)
