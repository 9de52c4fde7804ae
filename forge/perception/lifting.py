"""Objects lifted to 3D from their pixels: a few robust numbers per object, not the point cloud.

Each object's pixels (its mask, or the occlusion-aware box where it has none) are back-projected with
the image's camera. Points far behind the object's front surface are background (farther than `BEHIND`
times its size from the front; `BEHIND_BOX` for a box, which holds the floor and whatever stands behind
the object beside its own pixels), and points off its median depth by more than `MAD_LIMIT` robust
deviations are noise; both are dropped. Where the floor is known, a box's points within the floor's own
scatter of it (`Gravity.floor_band`) are floor seen beside the object and are dropped too; a box whose
lowest points then reach twice that band stands on the floor, and its bottom is the floor (a mask's
points are all the object's own).

What remains is measured in the gravity frame (across the view, up, along the view on the floor): the
width is the extent across the view, the height the extent along gravity, the bottom and top are heights
above the floor, and the centroid is the centre of that extent box (the visible surfaces are the front
and the top, so a mean would sit in front of the object's centre). A pixel's centre lies half a pixel
inside the object's outline, so the extents across and up are widened by half a pixel (at the object's
depth) on each side. Stray points cannot widen an extent by much: every point lies inside the object's
pixels and within the depth band above. Without gravity only the centroid is kept.

Everything is vectorized over all objects of an image at once: points carry their object's index and
per-object statistics are read from one sort, with no loop over objects or pixels.
"""

from __future__ import annotations

import numpy as np

from forge.perception.gravity import Gravity, back_project

BEHIND = 1.5  # of the object's size (from its pixel extent at its front depth): deeper mask points are background
BEHIND_BOX = 0.5  # the same for the pixels of a box
MAD_LIMIT = 3.5  # robust deviations (1.4826 MAD) from the median depth
MIN_SPREAD = 0.01  # of the median depth: the deviation allowed however flat the object is
MIN_POINTS = 12  # fewer points than this lift nothing

LIFTED = ("x3d", "y3d", "z3d", "across", "along", "elevation", "width3d", "height3d", "bottom", "top")


def grouped_median(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """The (lower) median of `values` within each group, from one sort; NaN for empty groups."""
    order = np.lexsort((values, groups))
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    out = np.full(n_groups, np.nan)
    present = counts > 0
    out[present] = values[order][(starts + (counts - 1) // 2)[present]]
    return out


def lift(depth: np.ndarray, intrinsics: tuple[float, float, float, float], owner: np.ndarray, rows: np.ndarray,
         cols: np.ndarray, fronts: np.ndarray, masked: np.ndarray, gravity: Gravity | None) -> dict[str, np.ndarray]:
    """Per object (`len(fronts)` of them), the lifted columns (`LIFTED`, NaN where unknown, and
    `points3d`) from its pixels: pixel i (rows[i], cols[i] of `depth`) belongs to object owner[i];
    `fronts` are the objects' front-surface depths (NaN: none), `masked` whether its pixels are its
    mask's; `intrinsics` are the camera's at the depth map's resolution."""
    n = len(fronts)
    out = {name: np.full(n, np.nan) for name in LIFTED}
    out["points3d"] = np.zeros(n, dtype=np.int64)
    values = depth[rows, cols]
    valid = np.isfinite(values) & (values > 0) & np.isfinite(fronts[owner])
    owner, rows, cols = owner[valid], rows[valid], cols[valid]
    if owner.size == 0:
        return out
    points = back_project(depth, intrinsics, rows, cols)
    z = points[:, 2]
    size = np.fmax(_grouped_extent(owner, cols, n) * fronts / intrinsics[0],
                   _grouped_extent(owner, rows, n) * fronts / intrinsics[1])
    behind = np.where(masked, BEHIND, BEHIND_BOX) * size
    keep = (z >= fronts[owner] * (1 - MIN_SPREAD)) & (z <= fronts[owner] + behind[owner])
    owner, points, z = owner[keep], points[keep], z[keep]
    median = grouped_median(owner, z, n)
    spread = grouped_median(owner, np.abs(z - median[owner]), n) * 1.4826
    allowed = np.fmax(MAD_LIMIT * spread, MIN_SPREAD * median)
    keep = np.abs(z - median[owner]) <= allowed[owner]
    owner, points = owner[keep], points[keep]
    floor = gravity is not None and gravity.camera_height is not None
    if floor:  # a box holds floor beside the object: those points are not its own
        elevation = points @ np.array(gravity.up) + gravity.camera_height
        on_floor = (elevation <= gravity.floor_band * points[:, 2]) & ~masked[owner]
        owner, points = owner[~on_floor], points[~on_floor]
    counts = np.bincount(owner, minlength=n)
    enough = counts >= MIN_POINTS
    axes = _gravity_axes(gravity)
    coords = points @ axes.T  # across, up (from the camera), along
    pixel = median / np.sqrt(intrinsics[0] * intrinsics[1])  # a pixel's size at the object's depth
    (a_low, a_high), (u_low, u_high), (f_low, f_high) = [_grouped_bounds(owner, coords[:, k], n) for k in range(3)]
    a_low, a_high, u_low, u_high = a_low - pixel / 2, a_high + pixel / 2, u_low - pixel / 2, u_high + pixel / 2
    if floor:  # a box's foot in the floor band stands on the floor: its bottom is the floor's height
        standing = ~masked & (u_low + gravity.camera_height <= 2 * gravity.floor_band * median)
        u_low = np.where(standing, -gravity.camera_height, u_low)
    centre = np.stack([(a_low + a_high) / 2, (u_low + u_high) / 2, (f_low + f_high) / 2], axis=1)
    known = lambda values: np.where(enough, values, np.nan)  # noqa: E731
    in_camera = centre @ axes
    out["points3d"] = counts
    out["x3d"], out["y3d"], out["z3d"] = (known(in_camera[:, k]) for k in range(3))
    if gravity is None:
        return out
    out["across"], out["along"] = known(centre[:, 0]), known(centre[:, 2])
    out["width3d"], out["height3d"] = known(a_high - a_low), known(u_high - u_low)
    if floor:
        out["bottom"], out["top"] = known(u_low + gravity.camera_height), known(u_high + gravity.camera_height)
        out["elevation"] = known(centre[:, 1] + gravity.camera_height)
    return out


def _gravity_axes(gravity: Gravity | None) -> np.ndarray:
    """Rows: across the view, up, along the view on the floor (camera coordinates); the camera's own
    axes (x, -y, z) without gravity."""
    if gravity is None:
        return np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    up = np.array(gravity.up, dtype=np.float64)
    forward = np.array([0.0, 0.0, 1.0]) - up[2] * up  # the optical axis laid on the floor
    if np.linalg.norm(forward) < 0.1:  # looking straight down: the image's up direction leads instead
        forward = np.array([0.0, -1.0, 0.0]) - up[1] * up
    forward /= np.linalg.norm(forward)
    return np.stack([np.cross(forward, up), up, forward])


def _grouped_bounds(groups: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of `values` per group (NaN for empty groups)."""
    high = np.full(n, -np.inf)
    low = np.full(n, np.inf)
    np.maximum.at(high, groups, values)
    np.minimum.at(low, groups, values)
    empty = ~np.isfinite(high)
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def _grouped_extent(groups: np.ndarray, pixels: np.ndarray, n: int) -> np.ndarray:
    """Pixels spanned per group: max - min + 1 (NaN for empty groups)."""
    low, high = _grouped_bounds(groups, pixels.astype(np.float64), n)
    return high - low + 1
