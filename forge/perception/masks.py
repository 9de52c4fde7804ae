"""Object masks, stored compactly: COCO's compressed run-length encoding at the image's size.

Annotations bring polygons or RLE (decoded by pycocotools), segmentation models bring pixel masks;
every mask is stored as the `counts` string of a COCO RLE, so a record stays small (a few hundred
bytes per object) and any COCO tool reads it back with the image's height and width.
"""

from __future__ import annotations

import warnings

import numpy as np
from pycocotools import mask as coco_mask

from forge.sources.coco_masks import check_fits, shape_of


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
    or compressed RLE. ValueError saying what is wrong when it is none of them or does not fit the image
    (`forge/sources/coco_masks.py`, which staging checked already)."""
    shape = shape_of(segmentation)
    check_fits(shape, height, width)
    if isinstance(segmentation, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        return rle["counts"].decode("ascii")
    if isinstance(segmentation["counts"], list):
        return coco_mask.frPyObjects(segmentation, height, width)["counts"].decode("ascii")
    return segmentation["counts"]


def resized(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask sampled at another resolution (nearest pixel), e.g. a depth map's."""
    rows = ((np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]).astype(int)
    cols = ((np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]).astype(int)
    return mask[np.ix_(np.minimum(rows, mask.shape[0] - 1), np.minimum(cols, mask.shape[1] - 1))]
