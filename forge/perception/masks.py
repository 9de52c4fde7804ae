"""Object masks, stored compactly: COCO's compressed run-length encoding at the image's size.

Annotations bring polygons or RLE (decoded by pycocotools), segmentation models bring pixel masks;
every mask is stored as the `counts` string of a COCO RLE, so a record stays small (a few hundred
bytes per object) and any COCO tool reads it back with the image's height and width.
"""

from __future__ import annotations

import warnings

import numpy as np
from pycocotools import mask as coco_mask


def encode(mask: np.ndarray) -> str:
    """A boolean (height, width) mask as RLE counts."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return rle["counts"].decode("ascii")


def decode(counts: str, height: int, width: int) -> np.ndarray:
    with warnings.catch_warnings():  # pycocotools' decoder predates NumPy 2's __array__(copy=...): harmless
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco_mask.decode({"size": [height, width], "counts": counts.encode("ascii")}).astype(bool)


def from_coco(segmentation: object, height: int, width: int) -> str:
    """RLE counts of a COCO `segmentation` for an image of `height` x `width`: polygons, uncompressed RLE
    or compressed RLE. ValueError saying what is wrong when it is none of them, or does not fit the image
    (another size, runs that do not add up to its pixels): a wrong mask would silently move the object's
    depth, and a run of 10^12 pixels would exhaust memory when decoded."""
    if isinstance(segmentation, list):
        if not segmentation or not all(isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
                                       and all(_finite(v) for v in polygon) for polygon in segmentation):
            raise ValueError("polygons must be lists of at least three x, y pairs of finite numbers")
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        return rle["counts"].decode("ascii")
    if not isinstance(segmentation, dict) or "counts" not in segmentation or "size" not in segmentation:
        raise ValueError("must be polygons [[x, y, ...], ...] or RLE {size: [height, width], counts: ...}")
    size, counts = segmentation["size"], segmentation["counts"]
    if size != [height, width]:
        raise ValueError(f"RLE size {size!r} is not the image's [height, width] = [{height}, {width}]")
    if isinstance(counts, list):
        if not all(isinstance(run, int) and not isinstance(run, bool) and run >= 0 for run in counts) \
                or sum(counts) != height * width:
            raise ValueError(f"uncompressed RLE counts must be non-negative integers adding up to the image's "
                             f"{height * width} pixels")
        return coco_mask.frPyObjects(segmentation, height, width)["counts"].decode("ascii")
    if not isinstance(counts, str):
        raise ValueError(f"RLE counts must be a list of runs or a compressed string, not {type(counts).__name__}")
    runs = _compressed_runs(counts)
    if runs is None or min(runs, default=0) < 0 or sum(runs) != height * width:
        raise ValueError(f"compressed RLE counts do not decode to runs covering the image's {height * width} pixels")
    return counts


def _compressed_runs(counts: str) -> list[int] | None:
    """The run lengths of COCO's compressed RLE string (pycocotools' rleFrString), or None when the string
    is not one: characters outside '0'..'o', or a value cut off at the end."""
    runs: list[int] = []
    value = shift = 0
    for char in counts:
        code = ord(char) - 48
        if not 0 <= code < 64:
            return None
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:
            continue
        if code & 0x10:
            value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value = shift = 0
    return runs if shift == 0 else None


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e12


def resized(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask sampled at another resolution (nearest pixel), e.g. a depth map's."""
    rows = ((np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]).astype(int)
    cols = ((np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]).astype(int)
    return mask[np.ix_(np.minimum(rows, mask.shape[0] - 1), np.minimum(cols, mask.shape[1] - 1))]
