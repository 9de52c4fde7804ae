"""A camera for every image: pinhole intrinsics in pixels of the upright picture, and where they came from.

Back-projecting pixel (u, v) at depth z gives x = (u - cx)·z / fx, y = (v - cy)·z / fy: every lateral
offset and size scales with the focal length, so a metric answer is only as good as its camera.
Candidates, best first by the spec's `objects.camera` order: the dataset's own calibration
(`annotation`: a COCO image entry's `K` or `fx`/`fy`/`cx`/`cy`), a table of records' columns
(`records`), the photo's EXIF (`exif`), a depth model that predicts the field of view (`model`);
the spec's `objects.horizontal_fov_deg` is the `default`, which metric and gravity families refuse
unless `verify.allow_default_camera` says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CAMERA_SOURCES = ("annotation", "records", "exif", "model", "default")
SEARCHED = CAMERA_SOURCES[:-1]  # what `objects.camera` may list; the default always comes last


@dataclass(frozen=True)
class Camera:
    fx: float
    fy: float
    cx: float
    cy: float
    source: str

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float, source: str) -> Camera:
        """Square pixels, the principal point at the centre, `fov_deg` across the width."""
        focal = width / (2 * math.tan(math.radians(fov_deg) / 2))
        return cls(focal, focal, width / 2, height / 2, source)

    @classmethod
    def centred(cls, width: int, height: int, fx: float, fy: float, source: str) -> Camera:
        return cls(fx, fy, width / 2, height / 2, source)

    def at(self, width: int, height: int, cols: int, rows: int) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) for a map of `cols` x `rows` covering the whole `width` x `height` picture."""
        sx, sy = cols / width, rows / height
        return self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy

    def fields(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "camera_source": self.source}


def from_matrix(matrix: object, width: int, height: int) -> Camera:
    """A COCO image entry's `K` (3x3, Omni3D / Cube R-CNN convention: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]);
    ValueError saying what is wrong."""
    rows = matrix if isinstance(matrix, list) else None
    if rows is None or len(rows) != 3 or any(not isinstance(r, list) or len(r) != 3 for r in rows):
        raise ValueError(f"{matrix!r} is not a 3x3 matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]")
    values = [v for r in rows for v in r]
    if any(not _finite(v) for v in values):
        raise ValueError(f"{matrix!r} holds a value that is not a finite number")
    return from_values(rows[0][0], rows[1][1], rows[0][2], rows[1][2], width, height)


def from_values(fx: object, fy: object, cx: object, cy: object, width: int, height: int, source: str = "annotation") -> Camera:
    """A camera from its four numbers; ValueError when a focal length is not positive or the principal
    point lies outside the picture."""
    for name, value in (("fx", fx), ("fy", fy), ("cx", cx), ("cy", cy)):
        if not _finite(value):
            raise ValueError(f"{name} = {value!r} is not a finite number")
    if fx <= 0 or fy <= 0:  # type: ignore[operator]
        raise ValueError(f"focal lengths must be positive pixels, got fx = {fx}, fy = {fy}")
    if not (0 <= cx <= width and 0 <= cy <= height):  # type: ignore[operator]
        raise ValueError(f"principal point ({cx}, {cy}) lies outside the {width}x{height} picture")
    return Camera(float(fx), float(fy), float(cx), float(cy), source)  # type: ignore[arg-type]


def choose(order: tuple[str, ...], candidates: dict[str, Camera | None], width: int, height: int,
           default_fov_deg: float) -> Camera:
    """The first candidate in `order` that is known, else the default camera."""
    for source in order:
        found = candidates.get(source)
        if found is not None:
            return found
    return Camera.from_fov(width, height, default_fov_deg, "default")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
