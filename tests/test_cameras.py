"""Cameras, gravity and lifting, piece by piece: EXIF focal lengths as cameras write them (and as files
get resized, cropped, rotated or broken), K matrices, gravity from pitch and roll, the floor fit, and
objects lifted from their pixels, each against exact geometry."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from forge.perception.camera import Camera, choose, from_matrix, from_values
from forge.perception.gravity import Gravity, fit_floor, from_pitch_roll, from_vector
from forge.perception.lifting import lift
from forge.perception.synthetic_scene import FIXED, Pose, render_scene
from forge.sources.exif import EXIF_IFD, FOCAL_35MM, FOCAL_LENGTH, PIXELS_X, PIXELS_Y, PLANE_UNIT, PLANE_X, PLANE_Y, exif_focal


def _photo(size: tuple[int, int], lens: dict, orientation: int = 1, fmt: str = "JPEG") -> Image.Image:
    tags = Image.Exif()
    tags[EXIF_IFD] = lens
    if orientation != 1:
        tags[0x0112] = orientation
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 120, 150)).save(buffer, fmt, exif=tags)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_exif_35mm_equivalent_is_read_on_the_frame_diagonal():
    # a phone's main camera: 26 mm equivalent, 4032 x 3024 -> fx = 26 * 5040 / 43.27 = 3028.4 px
    focal = exif_focal(_photo((4032, 3024), {FOCAL_35MM: 26}))
    assert focal == pytest.approx((26 * 5040 / 43.27,) * 2)
    hfov = math.degrees(2 * math.atan(4032 / 2 / focal[0]))
    assert 67 < hfov < 68  # what a 26 mm equivalent lens sees across a 4:3 picture


def test_exif_focal_plane_resolution_is_scaled_to_a_resized_file_and_a_crop_is_refused():
    lens = {FOCAL_LENGTH: 4.25, PLANE_X: 1000.0, PLANE_Y: 1000.0, PLANE_UNIT: 4, PIXELS_X: 4000, PIXELS_Y: 3000}
    assert exif_focal(_photo((4000, 3000), lens)) == pytest.approx((4250.0, 4250.0))  # 4.25 mm * 1000 px/mm
    assert exif_focal(_photo((1000, 750), lens)) == pytest.approx((1062.5, 1062.5))  # resized to a quarter
    assert exif_focal(_photo((1000, 1000), lens)) is None  # cropped to another shape: EXIF no longer describes it
    inches = {**lens, PLANE_X: 25400.0, PLANE_Y: 25400.0, PLANE_UNIT: 2}  # 25400 px per inch = 1000 px/mm
    assert exif_focal(_photo((4000, 3000), inches)) == pytest.approx((4250.0, 4250.0))
    assert exif_focal(_photo((4000, 3000), {FOCAL_LENGTH: 4.25, PLANE_X: 1000.0, PLANE_UNIT: 4})) is None  # no stated size


def test_exif_orientation_swaps_the_axes_and_bad_values_are_not_used():
    lens = {FOCAL_LENGTH: 4.0, PLANE_X: 1000.0, PLANE_Y: 500.0, PLANE_UNIT: 4, PIXELS_X: 400, PIXELS_Y: 300}
    assert exif_focal(_photo((400, 300), lens)) == pytest.approx((4000.0, 2000.0))
    assert exif_focal(_photo((400, 300), lens, orientation=6)) == pytest.approx((2000.0, 4000.0))  # rotated 90 degrees
    for bad in ({FOCAL_35MM: 0}, {FOCAL_35MM: 5000}, {FOCAL_35MM: 1}, {FOCAL_LENGTH: 0.0, PLANE_X: 100.0, PIXELS_X: 40,
                                                                      PIXELS_Y: 30}, {}):
        assert exif_focal(_photo((400, 300), bad)) is None, bad
    assert exif_focal(_photo((400, 300), {FOCAL_35MM: 28}, fmt="PNG")) is not None  # PNG eXIf chunks are read too


def test_synthetic_photos_carry_their_true_focal_length_in_exif():
    scene = render_scene(3, 4, 320, 240, 4, 9, camera="varied")
    with Image.open(io.BytesIO(scene.png_bytes(exif=True))) as img:
        focal = exif_focal(img)
    assert focal == pytest.approx((scene.intrinsics[0],) * 2, rel=1e-3)


def test_k_matrices_are_checked():
    camera = from_matrix([[500.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]], 640, 480)
    assert (camera.fx, camera.fy, camera.cx, camera.cy, camera.source) == (500.0, 510.0, 320.0, 240.0, "annotation")
    for bad, says in (([[1, 0], [0, 1]], "3x3"), ([[0, 0, 320], [0, 500, 240], [0, 0, 1]], "positive"),
                      ([[-5, 0, 320], [0, 500, 240], [0, 0, 1]], "positive"), ("K", "3x3"),
                      ([[500, 0, 9000], [0, 500, 240], [0, 0, 1]], "outside"), ([[float("nan"), 0, 1], [0, 1, 1], [0, 0, 1]], "finite")):
        with pytest.raises(ValueError, match=says):
            from_matrix(bad, 640, 480)
    with pytest.raises(ValueError, match="positive"):
        from_values(500, 0, 320, 240, 640, 480)


def test_the_first_known_camera_in_the_spec_order_wins_else_the_default():
    exif = Camera.centred(640, 480, 600.0, 600.0, "exif")
    model = Camera.from_fov(640, 480, 70.0, "model")
    assert choose(("annotation", "exif", "model"), {"exif": exif, "model": model}, 640, 480, 60.0) is exif
    assert choose(("model", "exif"), {"exif": exif, "model": model}, 640, 480, 60.0) is model
    fallback = choose(("annotation",), {"exif": exif}, 640, 480, 60.0)
    assert fallback.source == "default" and fallback.fx == pytest.approx(320 / math.tan(math.radians(30)))
    assert model.at(640, 480, 320, 240) == pytest.approx((model.fx / 2, model.fy / 2, 160.0, 120.0))


@pytest.mark.parametrize("pose", [FIXED, Pose(40.0, 1.2, 18.0, 5.0), Pose(100.0, 1.9, 7.0, -6.0)])
def test_gravity_from_pitch_and_roll_is_the_renderer_s_up(pose):
    assert from_pitch_roll(pose.pitch_deg, pose.roll_deg, None).up == pytest.approx(tuple(pose.up()), abs=1e-12)
    down = -pose.up()
    assert from_vector(tuple(down * 9.81), None).up == pytest.approx(tuple(pose.up()))
    with pytest.raises(ValueError, match="not a direction"):
        from_vector((0.0, 0.0, 0.0), None)


def test_the_floor_is_fitted_on_exact_depth_within_a_hundredth_of_a_degree():
    errors, heights = [], []
    for index in range(12):
        scene = render_scene(3, index, 320, 240, 4, 9, camera="varied")
        fitted = fit_floor(scene.depth, scene.intrinsics, scene.instance >= 0)
        assert fitted is not None and fitted.source == "floor_fit" and 0.3 < fitted.floor_share <= 1
        errors.append(math.degrees(math.acos(min(1.0, float(np.dot(fitted.up, scene.pose.up()))))))
        heights.append(abs(fitted.camera_height - scene.pose.height_m) / scene.pose.height_m)
        known = fit_floor(scene.depth, scene.intrinsics, scene.instance >= 0, Gravity(tuple(scene.pose.up()), None, "annotation"))
        assert known.source == "annotation" and known.camera_height == pytest.approx(scene.pose.height_m, rel=1e-3)
    assert max(errors) < 0.05 and max(heights) < 0.005


def test_no_floor_is_found_where_there_is_none():
    wall = np.full((120, 160), 5.0, dtype=np.float32)  # a wall facing the camera: no plane faces up
    assert fit_floor(wall, (150.0, 150.0, 80.0, 60.0), np.zeros(wall.shape, bool)) is None
    ceiling = np.zeros((120, 160), np.float32)
    rows = np.arange(120)[:, None] + 0.5
    ceiling[:] = np.where(rows < 60, 1.5 * 150 / np.maximum(60 - rows, 1e-3), np.inf)  # only above the horizon
    assert fit_floor(ceiling, (150.0, 150.0, 80.0, 60.0), ~np.isfinite(ceiling)) is None


def test_lifting_recovers_size_height_and_centre_of_unhidden_objects():
    widths, heights, centres = [], [], []
    for index in range(30):
        scene = render_scene(5, index, 320, 240, 3, 7, camera="varied")
        n = len(scene.objects)
        owner, rows, cols = np.nonzero(np.stack([scene.mask(i) for i in range(n)]))
        fronts = np.array([np.percentile(scene.depth[scene.mask(i)], 10) for i in range(n)])
        gravity = Gravity(tuple(scene.pose.up()), scene.pose.height_m, "annotation")
        out = lift(scene.depth, scene.intrinsics, owner, rows, cols, fronts, np.ones(n, bool), gravity)
        for i, obj in enumerate(scene.objects):
            x1, y1, x2, y2 = obj.box_px
            if obj.front_visible < 0.99 or min(x1, y1) <= 0 or x2 >= 320 or y2 >= 240:
                continue  # hidden in part or cut by the border: its visible extent is not its size
            widths.append(out["width3d"][i] / obj.width - 1)
            heights.append(out["height3d"][i] / obj.height - 1)
            truth = scene.in_camera(obj.centre)
            centres.append(np.linalg.norm([out["x3d"][i], out["y3d"][i], out["z3d"][i]] - truth) / np.linalg.norm(truth))
            assert out["bottom"][i] == pytest.approx(0.0, abs=0.05)
            assert out["top"][i] == pytest.approx(obj.height, abs=0.08)
    assert len(widths) >= 30
    assert np.median(np.abs(widths)) < 0.05 and np.median(np.abs(heights)) < 0.05 and np.median(centres) < 0.02


def test_lifting_without_gravity_keeps_only_the_centroid_and_drops_objects_without_points():
    scene = render_scene(5, 0, 320, 240, 3, 5, camera="varied")
    n = len(scene.objects)
    owner, rows, cols = np.nonzero(np.stack([scene.mask(i) for i in range(n)]))
    fronts = np.array([np.percentile(scene.depth[scene.mask(i)], 10) for i in range(n)])
    fronts[0] = np.nan  # an object without depth
    out = lift(scene.depth, scene.intrinsics, owner, rows, cols, fronts, np.ones(n, bool), None)
    assert np.isnan(out["x3d"][0]) and out["points3d"][0] == 0
    assert np.isfinite(out["z3d"][1:]).all() and (out["points3d"][1:] > 0).all()
    for name in ("across", "along", "elevation", "width3d", "height3d", "bottom", "top"):
        assert np.isnan(out[name]).all(), name


def test_background_seen_through_a_box_is_not_lifted_with_the_object():
    """Without a mask, the object's box holds the floor and the wall behind it: a depth band from its
    front surface keeps them out of its extent."""
    depth = np.full((100, 100), 20.0, dtype=np.float32)  # a far wall
    depth[40:60, 40:60] = 4.0  # a 20 px square at 4 m: 0.4 m wide with f = 200
    rows, cols = np.mgrid[30:70, 30:70]  # its box, twice too big, mostly wall
    owner = np.zeros(rows.size, dtype=np.int64)
    out = lift(depth, (200.0, 200.0, 50.0, 50.0), owner, rows.ravel(), cols.ravel(), np.array([4.0]), np.array([False]),
               Gravity((0.0, -1.0, 0.0), 1.5, "annotation"))
    assert out["width3d"][0] == pytest.approx(0.4, rel=0.03) and out["height3d"][0] == pytest.approx(0.4, rel=0.03)
    assert out["points3d"][0] == 400 and out["z3d"][0] == pytest.approx(4.0)
