"""Procedural scenes with exact geometry: forge's demo data and its correctness oracle.

Every object is a convex prism standing on a floor and extruded along the floor's forward axis (a
cube or, seen by varied cameras, a box of its own height; a cylinder lying end-on toward the camera; a
triangular prism). A pinhole camera at a height
above the floor sees them; its field of view, height, pitch and roll are one fixed pose (`FIXED`,
level at 60 degrees: the faces toward the camera are then planes of constant depth) or drawn per
scene (`varied`: phones, wide and ultra-wide lenses, telephoto, looking down 5-25 degrees, tilted).

Cluttered scenes (the default) are as hard as photos: objects overlap and hide each other in
part, repeat each other's labels, and are cut by any border of the image. Each object keeps at
least a third of its front face visible (else it is left out), and its truth is known exactly:
its front plane, its visible pixels (`Scene.instance`) and their box, its 3D centre and extents,
the camera's intrinsics and the direction of gravity. Easy scenes (`clutter=False`) never let two
boxes touch, so the box statistic alone is exact. A seeded generator makes every scene
reproducible from its parameters alone.

Frames: the world frame has its origin at the camera, x right, y down (along gravity), z forward
along the floor; the floor is the plane y = camera height. The camera frame is the world frame
pitched down about x, then rolled about the optical axis: x right, y down, z along the optical axis,
and the depth map holds z, the distance along the optical axis.
"""

from __future__ import annotations

import io
import math
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

BACK_WALL_M = 30.0  # a wall across the floor this far ahead
_NEAR_M, _FAR_M = 2.5, 14.0
FULL_FRAME_DIAGONAL_MM = 43.27  # of a 36 x 24 mm frame: what a 35 mm equivalent focal length is defined on
_EXIF_IFD, _FOCAL_35MM, _FOCAL_LENGTH = 0x8769, 0xA405, 0x920A
_PLANE_X, _PLANE_Y, _PLANE_UNIT, _PIXELS_X, _PIXELS_Y = 0xA20E, 0xA20F, 0xA210, 0xA002, 0xA003
SENSOR_WIDTH_MM = 6.4  # the small sensor a varied camera's EXIF FocalLength is stated for


@dataclass(frozen=True)
class Pose:
    """The camera: horizontal field of view, height above the floor, pitch (looking down > 0) and
    roll (positive turns the picture clockwise), all in degrees and metres."""

    fov_deg: float = 60.0
    height_m: float = 1.5
    pitch_deg: float = 0.0
    roll_deg: float = 0.0

    def focal(self, width: int) -> float:
        """Focal length in pixels for an image `width` pixels wide (square pixels)."""
        return width / (2 * math.tan(math.radians(self.fov_deg) / 2))

    def rotation(self) -> np.ndarray:
        """World-from-camera rotation: world = R @ camera."""
        p, r = math.radians(self.pitch_deg), math.radians(self.roll_deg)
        pitch = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(p), math.sin(p)], [0.0, -math.sin(p), math.cos(p)]])
        roll = np.array([[math.cos(r), -math.sin(r), 0.0], [math.sin(r), math.cos(r), 0.0], [0.0, 0.0, 1.0]])
        return pitch @ roll

    def up(self) -> np.ndarray:
        """The direction opposite to gravity, in camera coordinates (a unit vector)."""
        return self.rotation().T @ np.array([0.0, -1.0, 0.0])

    def intrinsics(self, width: int, height: int) -> tuple[float, float, float, float]:
        """fx, fy, cx, cy in pixels."""
        f = self.focal(width)
        return f, f, width / 2, height / 2


FIXED = Pose()
FOCAL_35MM_RANGE = (12, 55)  # varied cameras: 35 mm equivalent focal lengths, ultra-wide (~108 deg) to short tele (~35 deg)


def varied_pose(rng: np.random.Generator, width: int, height: int) -> Pose:
    """A camera as photo collections mix them: a whole 35 mm equivalent focal length (log-uniform,
    so wide and tele are as common as normal lenses), 1-2 m up, looking down 5-25 degrees, rolled
    up to 6 degrees either way."""
    low, high = FOCAL_35MM_RANGE
    f35 = int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
    fx = f35 * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM
    fov = math.degrees(2 * math.atan(width / (2 * fx)))
    return Pose(fov, float(rng.uniform(1.0, 2.0)), float(rng.uniform(5.0, 25.0)), float(rng.uniform(-6.0, 6.0)))


@dataclass(frozen=True)
class SceneObject:
    """One object: its label, 3D placement (world frame, metres) and visible image box (pixels)."""

    label: str
    shape: str
    x: float  # lateral centre, + is right
    z_front: float  # forward distance (along the floor) of the face toward the camera
    size: float  # width of the cross-section (and its height, unless `tall` says otherwise)
    length: float  # extent along the floor's forward axis
    box_px: tuple[int, int, int, int]  # x1, y1, x2, y2 of visible pixels, x2/y2 exclusive
    front_visible: float = 1.0  # fraction of its front face that is not hidden by nearer objects
    floor_m: float = 1.5  # the camera's height: where the object stands, in world y
    tall: float | None = None  # height of the cross-section when it is not `size` (varied scenes)

    @property
    def z_centre(self) -> float:
        return self.z_front + self.length / 2

    @property
    def centre(self) -> np.ndarray:
        """Centre of the object's bounding box, world frame (y down)."""
        return np.array([self.x, self.floor_m - self.height / 2, self.z_centre])

    @property
    def width(self) -> float:
        """Extent across the view (world x)."""
        return self.size

    @property
    def height(self) -> float:
        """Extent along gravity."""
        return self.tall if self.tall is not None else self.size


@dataclass(frozen=True)
class Scene:
    """A rendered scene: RGB pixels, exact z-depth in metres, its objects and its camera."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32, z-depth along the optical axis
    objects: list[SceneObject]
    instance: np.ndarray  # (H, W) int: index of the object seen at each pixel, -1 for none
    pose: Pose = FIXED

    def mask(self, i: int) -> np.ndarray:
        """The visible pixels of object `i`."""
        return self.instance == i

    @property
    def intrinsics(self) -> tuple[float, float, float, float]:
        height, width = self.depth.shape
        return self.pose.intrinsics(width, height)

    def in_camera(self, point: np.ndarray) -> np.ndarray:
        """A world point in camera coordinates (x right, y down, z along the optical axis)."""
        return self.pose.rotation().T @ point

    def png_bytes(self, exif: bool = False) -> bytes:
        """The picture as PNG; with `exif`, its focal length as cameras write it: the whole 35 mm
        equivalent (defined on the frame's diagonal) and the focal length in mm with the focal
        plane's resolution and the image size it is stated for."""
        buf = io.BytesIO()
        image = Image.fromarray(self.rgb)
        if not exif:
            image.save(buf, format="PNG")
            return buf.getvalue()
        height, width = self.depth.shape
        fx = self.pose.focal(width)
        pixels_per_mm = width / SENSOR_WIDTH_MM
        tags = Image.Exif()
        tags[_EXIF_IFD] = {_FOCAL_35MM: int(round(fx * FULL_FRAME_DIAGONAL_MM / math.hypot(width, height))),
                           _FOCAL_LENGTH: fx / pixels_per_mm, _PLANE_X: pixels_per_mm, _PLANE_Y: pixels_per_mm,
                           _PLANE_UNIT: 4, _PIXELS_X: width, _PIXELS_Y: height}  # unit 4: millimetres
        image.save(buf, format="PNG", exif=tags)
        return buf.getvalue()


def _cross_section(shape: str, x: float, size: float, floor: float, tall: float) -> np.ndarray:
    """Convex outline (N, 2) in world x/y (y down) of a shape `size` wide and `tall` high standing on the
    floor at y = `floor`.

    A cylinder's outline is only used for its bounding box; rays meet it analytically.
    """
    half = size / 2
    if shape == "prism":
        return np.array([[x - half, floor], [x + half, floor], [x, floor - tall]])
    return np.array([[x - half, floor], [x + half, floor], [x + half, floor - tall], [x - half, floor - tall]])


def _circle_interval(x: float, size: float, floor: float, dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval of t where the ray t·(dx, dy, ·) lies inside a cylinder of diameter `size` along z."""
    r, cxy = size / 2, (x, floor - size / 2)
    a = dx * dx + dy * dy
    half_b = dx * cxy[0] + dy * cxy[1]
    disc = half_b * half_b - a * (cxy[0] ** 2 + cxy[1] ** 2 - r * r)
    root = np.sqrt(np.maximum(disc, 0.0))
    miss = disc < 0
    return np.where(miss, np.inf, (half_b - root) / a), np.where(miss, -np.inf, (half_b + root) / a)


def _ray_interval(poly: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval [t_in, t_out] where the ray t·(dx, dy, ·) lies inside the polygon's prism.

    Clips the ray's projection against each half-plane of the convex polygon; `t_in > t_out`
    means the ray misses.
    """
    centroid = poly.mean(axis=0)
    t_in = np.zeros_like(dx)
    t_out = np.full_like(dx, np.inf)
    for p, q in zip(poly, np.roll(poly, -1, axis=0)):
        normal = np.array([q[1] - p[1], p[0] - q[0]])
        if normal @ (centroid - p) < 0:
            normal = -normal  # point it inside
        # inside when normal·(ray(t) - p) >= 0, i.e. t * (normal·dir) >= normal·p
        rate = normal[0] * dx + normal[1] * dy
        bound = normal @ p
        with np.errstate(divide="ignore", invalid="ignore"):
            t = bound / rate
        entering = rate > 0
        leaving = rate < 0
        t_in = np.where(entering, np.maximum(t_in, t), t_in)
        t_out = np.where(leaving, np.minimum(t_out, t), t_out)
        t_out = np.where((rate == 0) & (bound > 0), -np.inf, t_out)
    return t_in, t_out


def _projected_box(poly: np.ndarray, z_front: float, z_back: float, pose: Pose, width: int, height: int):
    """Image bounds of a prism's corners: where its pixels may fall."""
    corners = np.array([(px, py, z) for px, py in poly for z in (z_front, z_back)])
    cam = corners @ pose.rotation()  # rows: R^T @ corner
    fx, fy, cx, cy = pose.intrinsics(width, height)
    us = fx * cam[:, 0] / cam[:, 2] + cx
    vs = fy * cam[:, 1] / cam[:, 2] + cy
    return float(us.min()), float(vs.min()), float(us.max()), float(vs.max())


def _floor_band(pose: Pose, width: int, height: int) -> tuple[float, float]:
    """Forward distances of the floor seen along the image's vertical centre line, within [near, far]."""
    fx, fy, _, _ = pose.intrinsics(width, height)
    half = math.degrees(math.atan(height / 2 / fy))
    steepest = min(pose.pitch_deg + half, 80.0)
    flattest = pose.pitch_deg - half
    near = pose.height_m / math.tan(math.radians(steepest))
    far = pose.height_m / math.tan(math.radians(flattest)) if flattest > 0.5 else math.inf
    low, high = max(_NEAR_M, near * 0.7), min(_FAR_M, far)  # an object's base may be cut by the bottom edge
    return (low, high) if high > low + 0.5 else (near, near + 3.0)


MIN_FRONT_VISIBLE = 1 / 3  # a cluttered scene leaves out objects hidden more than this
MIN_PIXELS = 30
REPEAT_LABEL = 0.15  # chance that an object of a cluttered scene repeats a label already placed
CLUSTER = 0.6  # chance that it stands in front of or behind an object already placed, overlapping it


def _place(rng: np.random.Generator, n_objects: int, width: int, height: int, clutter: bool, pose: Pose,
           placed: list[tuple] | None = None, aspects: np.random.Generator | None = None) -> list[tuple]:
    """Draw objects up to `n_objects` (after those `placed`); (label, shape, colour, x, z_front, size, length,
    tall). With `aspects`, boxes and prisms get their own height (0.5-1.8 times their width) from that
    generator, so the scenes of the main stream stay as they are without it.

    Easy scenes keep every box apart and inside the top and bottom edges; cluttered ones let boxes
    overlap, repeat labels and cross any border as long as part of the object stays in view.
    """
    fx, _, cx, _ = pose.intrinsics(width, height)
    floor = pose.height_m
    near, far = _floor_band(pose, width, height)
    placed = list(placed or [])
    boxes = [_projected_box(_cross_section(p[1], p[3], p[5], floor, p[7]), p[4], p[4] + p[6], pose, width, height)
             for p in placed]
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
        aspect = float(aspects.uniform(0.5, 1.8)) if aspects is not None else 1.0
        tall = size * aspect if shape != "cylinder" else size
        z_front = float(rng.uniform(near, far))
        half_view = z_front * (width / 2) / fx
        x = float(rng.uniform(-half_view * 1.1, half_view * 1.1))
        if clutter and placed and rng.random() < CLUSTER:  # in line with another one: one hides part of the other
            pick = int(rng.integers(len(placed)))
            anchor, anchor_box = placed[pick], boxes[pick]
            z_front = float(np.clip(anchor[4] + rng.choice([-1, 1]) * rng.uniform(0.6, 4.0), near, far))
            u = (anchor_box[0] + anchor_box[2]) / 2 + rng.uniform(-0.7, 0.7) * (anchor_box[2] - anchor_box[0])
            x = float((u - cx) * z_front / fx)
        poly = _cross_section(shape, x, size, floor, tall)
        box = _projected_box(poly, z_front, z_front + length, pose, width, height)
        if box[2] < 8 or box[0] > width - 8 or box[3] < 8:
            continue  # keep every object at least partly in view
        if not clutter:
            if box[1] < 0 or box[3] > height:
                continue  # only the sides may truncate
            if any(not (box[2] + pad < b[0] or b[2] + pad < box[0] or box[3] + pad < b[1] or b[3] + pad < box[1])
                   for b in boxes):
                continue
        boxes.append(box)
        placed.append((f"{colour} {shape}", shape, colour, x, z_front, size, length, tall))
    return placed


def _surfaces(item: tuple, floor: float, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray):
    """One object alone: the depth its surface is hit at, where it is solid, and its front face."""
    _, shape, _, x, z_front, size, length, tall = item
    if shape == "cylinder":
        t_in, t_out = _circle_interval(x, size, floor, dx, dy)
    else:
        t_in, t_out = _ray_interval(_cross_section(shape, x, size, floor, tall), dx, dy)
    front, back = z_front / dz, (z_front + length) / dz  # where the ray crosses the front and back planes
    hit = np.maximum(t_in, front)
    solid = hit <= np.minimum(t_out, back)
    return hit, solid, solid & (t_in <= front), front


def _rays(pose: Pose, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World direction (dx, dy, dz) of each pixel's ray, scaled so that its camera z is 1: a point
    t·d on it is at depth t."""
    fx, fy, cx, cy = pose.intrinsics(width, height)
    u = (np.arange(width) + 0.5 - cx) / fx
    v = (np.arange(height) + 0.5 - cy) / fy
    xn, yn = np.meshgrid(u, v)
    if pose.pitch_deg == 0 and pose.roll_deg == 0:
        return xn, yn, np.ones_like(xn)
    r = pose.rotation()
    return (r[0, 0] * xn + r[0, 1] * yn + r[0, 2], r[1, 0] * xn + r[1, 1] * yn + r[1, 2],
            r[2, 0] * xn + r[2, 1] * yn + r[2, 2])


def _draw(placed: list[tuple], width: int, height: int, pose: Pose, alone: dict):
    """Z-buffer the objects: pixels, depth, instance map, and each object's unoccluded front face.

    `alone` keeps each object's own surfaces, which do not depend on the others, across redraws.
    """
    dx, dy, dz = _rays(pose, width, height)
    with np.errstate(divide="ignore"):
        wall = BACK_WALL_M / dz
        ground = np.where(dy > 0, pose.height_m / dy, np.inf)
    on_ground = ground < wall
    depth = np.where(on_ground, ground, wall)
    rgb = np.empty((height, width, 3))
    rgb[:] = (185, 200, 215)
    shade = np.clip(1.0 - (ground - 2) / 40, 0.55, 1.0)[..., None]
    rgb = np.where(on_ground[..., None], np.array([150, 140, 120]) * shade, rgb)
    instance = np.full((height, width), -1)
    front_face = np.zeros((height, width), dtype=bool)
    faces = []
    for i, item in enumerate(placed):
        if item not in alone:
            alone[item] = _surfaces(item, pose.height_m, dx, dy, dz)
        hit, solid, face, front = alone[item]
        faces.append(face)
        visible = solid & (hit < depth)
        depth[visible] = np.where(face[visible], front[visible], hit[visible])
        instance[visible] = i
        front_face[visible] = face[visible]
    for i, item in enumerate(placed):  # colour once, from what ended up visible
        base = np.array(COLOURS[item[2]], dtype=float)
        mine = instance == i
        rgb[mine & front_face] = base
        rgb[mine & ~front_face] = base * 0.7
    return rgb, depth, instance, faces


def render_scene(seed: int, index: int, width: int, height: int, min_objects: int, max_objects: int,
                 clutter: bool = True, camera: str = "fixed") -> Scene:
    """Render scene `index` of the stream seeded by `seed`; identical inputs give identical pixels.
    `camera`: `fixed` (`FIXED`) or `varied` (a pose drawn per scene, `varied_pose`)."""
    rng = np.random.default_rng([seed, index] if not clutter else [seed, index, 1])
    pose = FIXED if camera == "fixed" else varied_pose(np.random.default_rng([seed, index, 2]), width, height)
    aspects = None if camera == "fixed" else np.random.default_rng([seed, index, 3])
    n_objects = int(rng.integers(min_objects, max_objects + 1))
    placed = _place(rng, n_objects, width, height, clutter, pose, aspects=aspects)
    alone: dict = {}
    for attempt in range(8):
        rgb, depth, instance, faces = _draw(placed, width, height, pose, alone)
        shown = [(faces[i] & (instance == i)).sum() / max(faces[i].sum(), 1) for i in range(len(placed))]
        pixels = [(instance == i).sum() for i in range(len(placed))]
        hidden = [i for i in range(len(placed)) if shown[i] < MIN_FRONT_VISIBLE or pixels[i] < MIN_PIXELS]
        if not clutter or not hidden:
            break
        placed = [p for i, p in enumerate(placed) if i not in hidden]  # leave out what is mostly hidden,
        if attempt < 6:  # and draw others in its place
            placed = _place(rng, n_objects, width, height, clutter, pose, placed, aspects)
    else:  # the last attempt left objects out: draw what remains (leaving out hides nothing more)
        rgb, depth, instance, faces = _draw(placed, width, height, pose, alone)
        shown = [(faces[i] & (instance == i)).sum() / max(faces[i].sum(), 1) for i in range(len(placed))]
    objects = []
    for i, (label, shape, _, x, z_front, size, length, tall) in enumerate(placed):
        ys, xs = np.nonzero(instance == i)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(SceneObject(label, shape, x, z_front, size, length, box, float(shown[i]), pose.height_m,
                                   tall if tall != size else None))
    return Scene(rgb.round().astype(np.uint8), depth.astype(np.float32), objects, instance, pose)
