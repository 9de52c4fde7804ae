"""The shape of a COCO `segmentation` (polygons, uncompressed or compressed RLE), checked without decoding.

A mask that does not fit its image would silently move its object's depth, and an RLE run of 10^12 pixels
would exhaust memory when decoded, so every segmentation is checked when the annotation file is staged:
its structure here, while the file streams, and its size against its image's afterwards (`annotated.py`,
where both are known). `perception/masks.py` decodes what passed.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PIXELS = 1 << 62  # a sum of runs beyond this is no image's


@dataclass(frozen=True)
class MaskShape:
    """What an RLE says of its image: [height, width] and the pixels its runs cover (None for polygons,
    which pycocotools draws at any image size)."""

    height: int | None = None
    width: int | None = None
    pixels: int | None = None


def shape_of(segmentation: object) -> MaskShape:
    """The segmentation's shape; ValueError saying what is wrong with its structure."""
    if isinstance(segmentation, list):
        if not segmentation or not all(isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
                                       and all(_finite(v) for v in polygon) for polygon in segmentation):
            raise ValueError("polygons must be lists of at least three x, y pairs of finite numbers")
        return MaskShape()
    if not isinstance(segmentation, dict) or "counts" not in segmentation or "size" not in segmentation:
        raise ValueError("must be polygons [[x, y, ...], ...] or RLE {size: [height, width], counts: ...}")
    size, counts = segmentation["size"], segmentation["counts"]
    if not isinstance(size, list) or len(size) != 2 or not all(_count(v) and 0 < v < 1 << 31 for v in size):
        raise ValueError(f"RLE size {_short(size)} must be [height, width] in pixels")
    if isinstance(counts, list):
        if not all(_count(run) for run in counts):
            raise ValueError("uncompressed RLE counts must be non-negative integers")
        return MaskShape(size[0], size[1], min(sum(counts), MAX_PIXELS))
    if not isinstance(counts, str):
        raise ValueError(f"RLE counts must be a list of runs or a compressed string, not {type(counts).__name__}")
    runs = compressed_runs(counts)
    if runs is None or min(runs, default=0) < 0:
        raise ValueError("compressed RLE counts do not decode (not COCO's run-length string)")
    return MaskShape(size[0], size[1], min(sum(runs), MAX_PIXELS))


def check_fits(shape: MaskShape, height: int, width: int) -> None:
    """ValueError when an RLE is of another size than its image, or its runs do not cover it exactly."""
    if shape.height is None:
        return
    if (shape.height, shape.width) != (height, width):
        raise ValueError(f"RLE size [{shape.height}, {shape.width}] is not the image's [height, width] = "
                         f"[{height}, {width}]")
    if shape.pixels != height * width:
        raise ValueError(f"RLE runs cover {shape.pixels} pixels instead of adding up to the image's "
                         f"{height * width} pixels")


def compressed_runs(counts: str) -> list[int] | None:
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


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e12


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
