"""Gravity per image: which way is up, and how high the camera stands above the floor.

Pitch leaks depth into "height" and "above" unless points are measured in a frame aligned with
gravity. The direction comes from the annotations where they give it (a gravity vector, or the
camera's pitch and roll); else from the floor: a RANSAC plane fit on the back-projected depth map
that takes the largest plane facing roughly up in the image (within `MAX_TILT_DEG`), below the
camera, covering at least `MIN_FLOOR_SHARE` of the pixels outside the objects, scored by truncated
squared residual (MSAC) and refined by least squares in a band as narrow as the floor's own scatter. Without either,
there is no gravity and the families that need it skip the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_TILT_DEG = 50.0  # the floor's normal lies within this angle of the image's up direction
MIN_FLOOR_SHARE = 0.08  # of the valid background pixels
INLIER_DEPTH_FRACTION = 0.015  # a point is on the plane within this fraction of its depth
MIN_BAND = 0.002  # the refinement's band never narrows below this fraction of the depth
DEFAULT_BAND = 0.005  # the floor's scatter where gravity was given, not fitted
REFINEMENTS = 3
SAMPLE_POINTS = 4096
HYPOTHESES = 256
SEED = 0x5EED  # RANSAC is seeded: the same depth map always gives the same floor


@dataclass(frozen=True)
class Gravity:
    """`up`: unit vector opposite to gravity in camera coordinates (x right, y down, z forward);
    `camera_height`: the camera's height above the floor (depth units); `source`: annotation or
    floor_fit; `floor_share`: the floor fit's inlier share (None for annotations); `floor_band`: how far
    from the plane (a fraction of the depth) the fitted floor's own points scatter, so that lifting
    knows which points of a box are floor (`DEFAULT_BAND` where nothing was fitted)."""

    up: tuple[float, float, float]
    camera_height: float | None
    source: str
    floor_share: float | None = None
    floor_band: float = DEFAULT_BAND

    def fields(self) -> dict:
        return {"up_x": self.up[0], "up_y": self.up[1], "up_z": self.up[2], "camera_height": self.camera_height,
                "gravity_source": self.source, "floor_share": self.floor_share}


NO_GRAVITY = {"up_x": None, "up_y": None, "up_z": None, "camera_height": None, "gravity_source": "none",
              "floor_share": None}


def from_pitch_roll(pitch_deg: float, roll_deg: float, camera_height: float | None) -> Gravity:
    """A camera looking down by `pitch_deg` and rolled by `roll_deg` (the picture turned clockwise)."""
    p, r = math.radians(pitch_deg), math.radians(roll_deg)
    # world-from-camera R = pitch(p) @ roll(r); up in camera coordinates = R^T (0, -1, 0)
    up = (-math.cos(p) * math.sin(r), -math.cos(p) * math.cos(r), -math.sin(p))
    return Gravity(up, camera_height, "annotation")


def from_vector(gravity: tuple[float, float, float], camera_height: float | None) -> Gravity:
    """The direction gravity pulls, in camera coordinates; ValueError when it is zero."""
    norm = math.sqrt(sum(g * g for g in gravity))
    if not math.isfinite(norm) or norm == 0:
        raise ValueError(f"gravity {list(gravity)} is not a direction")
    return Gravity(tuple(-g / norm for g in gravity), camera_height, "annotation")  # type: ignore[arg-type]


def back_project(depth: np.ndarray, intrinsics: tuple[float, float, float, float],
                 rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Camera-frame points (N, 3) of pixels (rows, cols) of a z-depth map."""
    fx, fy, cx, cy = intrinsics
    z = depth[rows, cols].astype(np.float64)
    return np.stack([(cols + 0.5 - cx) * z / fx, (rows + 0.5 - cy) * z / fy, z], axis=1)


def fit_floor(depth: np.ndarray, intrinsics: tuple[float, float, float, float], exclude: np.ndarray,
              known: Gravity | None = None) -> Gravity | None:
    """The floor of a metric depth map (see the module docstring); None when no plane qualifies.
    `exclude` marks the pixels of objects, which are never floor. With `known` gravity (an up direction
    without a camera height), only the floor's height along it is fitted."""
    usable = np.isfinite(depth) & (depth > 0) & ~exclude
    rows, cols = np.nonzero(usable)
    if rows.size < 64:
        return None
    step = max(1, rows.size // SAMPLE_POINTS)
    points = back_project(depth, intrinsics, rows[::step], cols[::step])
    picks = np.random.default_rng(SEED).integers(0, len(points), size=(HYPOTHESES, 3))
    a = points[picks[:, 0]]
    if known is not None:  # one point fixes a plane of known orientation
        normals = np.repeat(np.array([known.up], dtype=np.float64), len(a), axis=0)
    else:
        normals = np.cross(points[picks[:, 1]] - a, points[picks[:, 2]] - a)
        norms = np.linalg.norm(normals, axis=1)
        good = norms > 1e-12
        normals, a = normals[good] / norms[good, None], a[good]
        flip = np.einsum("ij,ij->i", normals, a) > 0  # orient n toward the camera (the origin)
        normals[flip] = -normals[flip]
    offsets = -np.einsum("ij,ij->i", normals, a)  # plane: n·X + d = 0; d > 0: the camera is above it
    plausible = (offsets > 0) & (-normals[:, 1] >= math.cos(math.radians(MAX_TILT_DEG)) if known is None else offsets > 0)
    if not plausible.any():
        return None
    normals, offsets = normals[plausible], offsets[plausible]
    tolerance = INLIER_DEPTH_FRACTION * points[:, 2]
    relative = np.abs(normals @ points.T + offsets[:, None]) / points[None, :, 2]
    # MSAC: the plane with the least truncated squared residual; counting inliers alone would prefer a
    # plane tilted to take in the foot of a wall beside the floor
    best = int(np.argmin(np.minimum(relative, INLIER_DEPTH_FRACTION) ** 2 @ np.ones(len(points))))
    normal, offset = normals[best], float(offsets[best])
    band = INLIER_DEPTH_FRACTION
    for _ in range(REFINEMENTS):  # a band as narrow as the floor's own scatter, then least squares on it
        relative = np.abs(points @ normal + offset) / points[:, 2]
        band = np.clip(3 * 1.4826 * np.median(relative[relative <= INLIER_DEPTH_FRACTION]), MIN_BAND, INLIER_DEPTH_FRACTION)
        chosen = points[relative <= band]
        if len(chosen) < 3:
            return None
        if known is None:
            normal, offset = _refine(chosen, normal)
        else:
            offset = float(np.median(-chosen @ normal))
    share = float((np.abs(points @ normal + offset) <= tolerance).mean())
    if share < MIN_FLOOR_SHARE or offset <= 0 or (known is None and -normal[1] < math.cos(math.radians(MAX_TILT_DEG))):
        return None
    if known is not None:
        return Gravity(known.up, offset, known.source, share, float(band))
    return Gravity(tuple(float(v) for v in normal), offset, "floor_fit", share, float(band))  # type: ignore[arg-type]


def _refine(points: np.ndarray, guess: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane through `points`, its normal on the side of `guess` and toward the camera."""
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    normal = vt[-1] if vt[-1] @ guess >= 0 else -vt[-1]
    offset = -float(normal @ centre)
    return normal, offset
