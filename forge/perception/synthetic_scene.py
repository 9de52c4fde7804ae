"""Procedural scenes with exact geometry: forge's demo data and its correctness oracle.

Every object is a convex prism extruded along the camera's optical axis (a cube, a
cylinder seen end-on, a triangular prism), resting on a ground plane. Their faces toward
the camera are flat, so an object's nearest point is exactly its front plane `z_front`.

Cluttered scenes (the default) are as hard as photos: objects overlap and hide each other in
part, repeat each other's labels, and are cut by any border of the image. Each object keeps at
least a third of its front face visible (else it is left out), and its truth is known exactly:
its front plane, its visible pixels (`Scene.instance`) and their box. Easy scenes (`clutter=False`)
never let two boxes touch, so the box statistic alone is exact. A seeded generator makes every
scene reproducible from its parameters alone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 210),
    "yellow": (230, 200, 40),
    "purple": (140, 60, 170),
    "orange": (240, 130, 30),
}
SHAPES = ("cube", "cylinder", "prism")

CAMERA_HEIGHT_M = 1.5
HORIZONTAL_FOV_DEG = 60.0
BACK_WALL_M = 30.0
_NEAR_M, _FAR_M = 2.5, 14.0


@dataclass(frozen=True)
class SceneObject:
    """One object: its label, 3D placement (camera frame, metres) and visible image box (pixels)."""

    label: str
    shape: str
    x: float  # lateral centre, + is right
    z_front: float  # depth of the face toward the camera
    size: float  # width = height of the cross-section
    length: float  # extent along the optical axis
    box_px: tuple[int, int, int, int]  # x1, y1, x2, y2 of visible pixels, x2/y2 exclusive
    front_visible: float = 1.0  # fraction of its front face that is not hidden by nearer objects

    @property
    def z_centre(self) -> float:
        return self.z_front + self.length / 2


@dataclass(frozen=True)
class Scene:
    """A rendered scene: RGB pixels, exact z-depth in metres, and its objects."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32, z-depth along the optical axis
    objects: list[SceneObject]
    instance: np.ndarray  # (H, W) int: index of the object seen at each pixel, -1 for none

    def mask(self, i: int) -> np.ndarray:
        """The visible pixels of object `i`."""
        return self.instance == i

    def png_bytes(self) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(self.rgb).save(buf, format="PNG")
        return buf.getvalue()


def focal_px(width: int) -> float:
    return width / (2 * np.tan(np.radians(HORIZONTAL_FOV_DEG) / 2))


def _cross_section(shape: str, x: float, size: float) -> np.ndarray:
    """Convex outline (N, 2) in camera x/y (y down) of a shape standing on the ground.

    A cylinder's outline is only used for its bounding box; rays meet it analytically.
    """
    half, base = size / 2, CAMERA_HEIGHT_M
    if shape == "cube":
        return np.array([[x - half, base], [x + half, base], [x + half, base - size], [x - half, base - size]])
    if shape == "prism":
        return np.array([[x - half, base], [x + half, base], [x, base - size]])
    return np.array([[x - half, base], [x + half, base], [x + half, base - size], [x - half, base - size]])


def _circle_interval(x: float, size: float, xn: np.ndarray, yn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth interval where the ray (xn·z, yn·z, z) lies inside a cylinder of diameter `size` along z."""
    r, cxy = size / 2, (x, CAMERA_HEIGHT_M - size / 2)
    a = xn * xn + yn * yn
    half_b = xn * cxy[0] + yn * cxy[1]
    disc = half_b * half_b - a * (cxy[0] ** 2 + cxy[1] ** 2 - r * r)
    root = np.sqrt(np.maximum(disc, 0.0))
    miss = disc < 0
    return np.where(miss, np.inf, (half_b - root) / a), np.where(miss, -np.inf, (half_b + root) / a)


def _ray_interval(poly: np.ndarray, xn: np.ndarray, yn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth interval [z_in, z_out] where the ray (xn·z, yn·z, z) lies inside the polygon's prism.

    Clips the ray's projection against each half-plane of the convex polygon; `z_in > z_out`
    means the ray misses.
    """
    centroid = poly.mean(axis=0)
    z_in = np.zeros_like(xn)
    z_out = np.full_like(xn, np.inf)
    for p, q in zip(poly, np.roll(poly, -1, axis=0)):
        normal = np.array([q[1] - p[1], p[0] - q[0]])
        if normal @ (centroid - p) < 0:
            normal = -normal  # point it inside
        # inside when normal·(ray(z) - p) >= 0, i.e. z * (normal·dir) >= normal·p
        rate = normal[0] * xn + normal[1] * yn
        bound = normal @ p
        with np.errstate(divide="ignore", invalid="ignore"):
            z = bound / rate
        entering = rate > 0
        leaving = rate < 0
        z_in = np.where(entering, np.maximum(z_in, z), z_in)
        z_out = np.where(leaving, np.minimum(z_out, z), z_out)
        z_out = np.where((rate == 0) & (bound > 0), -np.inf, z_out)
    return z_in, z_out


def _projected_box(poly: np.ndarray, z_front: float, z_back: float, f: float, cx: float, cy: float):
    pts = [(px, py, z) for px, py in poly for z in (z_front, z_back)]
    us = [f * px / z + cx for px, py, z in pts]
    vs = [f * py / z + cy for px, py, z in pts]
    return min(us), min(vs), max(us), max(vs)


MIN_FRONT_VISIBLE = 1 / 3  # a cluttered scene leaves out objects hidden more than this
MIN_PIXELS = 30
REPEAT_LABEL = 0.15  # chance that an object of a cluttered scene repeats a label already placed
CLUSTER = 0.6  # chance that it stands in front of or behind an object already placed, overlapping it


def _place(rng: np.random.Generator, n_objects: int, width: int, height: int, clutter: bool,
           placed: list[tuple] | None = None) -> list[tuple]:
    """Draw objects up to `n_objects` (after those `placed`); (label, shape, colour, x, z_front, size, length).

    Easy scenes keep every box apart and inside the top and bottom edges; cluttered ones let boxes
    overlap, repeat labels and cross any border as long as part of the object stays in view.
    """
    f, cx, cy = focal_px(width), width / 2, height / 2
    placed = list(placed or [])
    boxes = [_projected_box(_cross_section(p[1], p[3], p[5]), p[4], p[4] + p[6], f, cx, cy) for p in placed]
    pad = 2.0
    for _ in range(n_objects * 40):
        if len(placed) == n_objects:
            break
        colour = str(rng.choice(list(COLOURS)))
        shape = str(rng.choice(SHAPES))
        if clutter and placed and rng.random() < REPEAT_LABEL:
            _, shape, colour, *_ = placed[int(rng.integers(len(placed)))]
        size = float(rng.uniform(0.35, 1.1))
        length = float(rng.uniform(0.3, 1.0)) * size
        z_front = float(rng.uniform(_NEAR_M, _FAR_M))
        half_view = z_front * (width / 2) / f
        x = float(rng.uniform(-half_view * 1.1, half_view * 1.1))
        if clutter and placed and rng.random() < CLUSTER:  # in line with another one: one hides part of the other
            pick = int(rng.integers(len(placed)))
            anchor, anchor_box = placed[pick], boxes[pick]
            z_front = float(np.clip(anchor[4] + rng.choice([-1, 1]) * rng.uniform(0.6, 4.0), _NEAR_M, _FAR_M))
            u = (anchor_box[0] + anchor_box[2]) / 2 + rng.uniform(-0.7, 0.7) * (anchor_box[2] - anchor_box[0])
            x = float((u - cx) * z_front / f)
        poly = _cross_section(shape, x, size)
        box = _projected_box(poly, z_front, z_front + length, f, cx, cy)
        if box[2] < 8 or box[0] > width - 8 or box[3] < 8:
            continue  # keep every object at least partly in view
        if not clutter:
            if box[1] < 0 or box[3] > height:
                continue  # only the sides may truncate
            if any(not (box[2] + pad < b[0] or b[2] + pad < box[0] or box[3] + pad < b[1] or b[3] + pad < box[1])
                   for b in boxes):
                continue
        boxes.append(box)
        placed.append((f"{colour} {shape}", shape, colour, x, z_front, size, length))
    return placed


def _surfaces(item: tuple, xn: np.ndarray, yn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One object alone: the depth its surface is hit at, where it is solid, and its front face."""
    _, shape, _, x, z_front, size, length = item
    if shape == "cylinder":
        z_in, z_out = _circle_interval(x, size, xn, yn)
    else:
        z_in, z_out = _ray_interval(_cross_section(shape, x, size), xn, yn)
    hit = np.maximum(z_in, z_front)
    solid = hit <= np.minimum(z_out, z_front + length)
    return hit, solid, solid & (z_in <= z_front)


def _draw(placed: list[tuple], width: int, height: int, alone: dict):
    """Z-buffer the objects: pixels, depth, instance map, and each object's unoccluded front face.

    `alone` keeps each object's own surfaces, which do not depend on the others, across redraws.
    """
    f, cx, cy = focal_px(width), width / 2, height / 2
    u = (np.arange(width) + 0.5 - cx) / f
    v = (np.arange(height) + 0.5 - cy) / f
    xn, yn = np.meshgrid(u, v)
    depth = np.full((height, width), BACK_WALL_M)
    with np.errstate(divide="ignore"):
        ground = np.where(yn > 0, CAMERA_HEIGHT_M / yn, np.inf)
    on_ground = ground < BACK_WALL_M
    depth = np.where(on_ground, ground, depth)
    rgb = np.empty((height, width, 3))
    rgb[:] = (185, 200, 215)
    shade = np.clip(1.0 - (ground - 2) / 40, 0.55, 1.0)[..., None]
    rgb = np.where(on_ground[..., None], np.array([150, 140, 120]) * shade, rgb)
    instance = np.full((height, width), -1)
    front_face = np.zeros((height, width), dtype=bool)
    faces = []
    for i, item in enumerate(placed):
        if item not in alone:
            alone[item] = _surfaces(item, xn, yn)
        hit, solid, face = alone[item]
        faces.append(face)
        visible = solid & (hit < depth)
        depth[visible] = np.where(face[visible], item[4], hit[visible])
        instance[visible] = i
        front_face[visible] = face[visible]
    for i, item in enumerate(placed):  # colour once, from what ended up visible
        base = np.array(COLOURS[item[2]], dtype=float)
        mine = instance == i
        rgb[mine & front_face] = base
        rgb[mine & ~front_face] = base * 0.7
    return rgb, depth, instance, faces


def render_scene(seed: int, index: int, width: int, height: int, min_objects: int, max_objects: int,
                 clutter: bool = True) -> Scene:
    """Render scene `index` of the stream seeded by `seed`; identical inputs give identical pixels."""
    rng = np.random.default_rng([seed, index] if not clutter else [seed, index, 1])
    n_objects = int(rng.integers(min_objects, max_objects + 1))
    placed = _place(rng, n_objects, width, height, clutter)
    alone: dict = {}
    for attempt in range(8):
        rgb, depth, instance, faces = _draw(placed, width, height, alone)
        shown = [(faces[i] & (instance == i)).sum() / max(faces[i].sum(), 1) for i in range(len(placed))]
        pixels = [(instance == i).sum() for i in range(len(placed))]
        hidden = [i for i in range(len(placed)) if shown[i] < MIN_FRONT_VISIBLE or pixels[i] < MIN_PIXELS]
        if not clutter or not hidden:
            break
        placed = [p for i, p in enumerate(placed) if i not in hidden]  # leave out what is mostly hidden,
        if attempt < 6:  # and draw others in its place
            placed = _place(rng, n_objects, width, height, clutter, placed)
    objects = []
    for i, (label, shape, _, x, z_front, size, length) in enumerate(placed):
        ys, xs = np.nonzero(instance == i)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(SceneObject(label, shape, x, z_front, size, length, box, float(shown[i])))
    return Scene(rgb.round().astype(np.uint8), depth.astype(np.float32), objects, instance)
