"""What a photo's EXIF says about its lens: the focal length in pixels of the picture as displayed.

Cameras write the 35 mm equivalent focal length (`FocalLengthIn35mmFilm`, defined on the 43.27 mm
diagonal of a 36 x 24 mm frame, so it survives resizing) and the focal length in millimetres with
the focal plane's resolution (pixels per unit of the sensor, for the image size the camera stated
in `PixelXDimension` / `PixelYDimension`). A file whose pixels are not the size EXIF states was
resized (the same shape: the focal length is scaled) or cropped (another shape: EXIF no longer
describes it, and is not used). Values outside a plausible lens are not used either.
"""

from __future__ import annotations

import math

from PIL import Image

FULL_FRAME_DIAGONAL_MM = 43.27
EXIF_IFD = 0x8769
ORIENTATION = 0x0112
TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
FOCAL_35MM, FOCAL_LENGTH = 0xA405, 0x920A
PLANE_X, PLANE_Y, PLANE_UNIT = 0xA20E, 0xA20F, 0xA210
PIXELS_X, PIXELS_Y = 0xA002, 0xA003
UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # FocalPlaneResolutionUnit: inch, cm, mm, micrometre
PLAUSIBLE_FOV_DEG = (3.0, 150.0)  # horizontal: a 35 mm equivalent of about 6.5 mm to 700 mm
SHAPE_TOLERANCE = 0.01


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]  # PIL's IFDRational, int or float
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def exif_focal(img: Image.Image) -> tuple[float, float] | None:
    """(fx, fy) in pixels of the displayed (EXIF-oriented) picture, or None when EXIF gives no
    usable focal length. `img` is the opened file, before any transpose or draft decoding."""
    try:
        tags = img.getexif()
        lens = tags.get_ifd(EXIF_IFD)
        orientation = tags.get(ORIENTATION, 1)
    except Exception:  # noqa: BLE001  a malformed EXIF block raises many types; it just says nothing
        return None
    width, height = img.size  # as stored (before orientation), as EXIF states its sizes
    stated = (_number(lens.get(PIXELS_X)), _number(lens.get(PIXELS_Y)))
    scale = 1.0
    if stated[0] and stated[1]:
        if abs(stated[0] * height - stated[1] * width) > SHAPE_TOLERANCE * stated[0] * height:
            return None  # cropped: EXIF describes another picture
        scale = width / stated[0]
    focal = _from_35mm(lens, width, height)
    if focal is None and stated[0] and stated[1]:  # the sensor's resolution needs the size it is stated for
        focal = _from_focal_plane(lens)
        if focal is not None:
            focal = (focal[0] * scale, focal[1] * scale)
    if focal is None:
        return None
    fov = math.degrees(2 * math.atan(width / (2 * focal[0])))
    if not PLAUSIBLE_FOV_DEG[0] <= fov <= PLAUSIBLE_FOV_DEG[1]:
        return None
    return (focal[1], focal[0]) if orientation in TRANSPOSED else focal


def _from_35mm(lens: dict, width: int, height: int) -> tuple[float, float] | None:
    f35 = _number(lens.get(FOCAL_35MM))
    if f35 is None:
        return None
    focal = f35 * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM
    return focal, focal


def _from_focal_plane(lens: dict) -> tuple[float, float] | None:
    mm, unit = _number(lens.get(FOCAL_LENGTH)), UNIT_MM.get(lens.get(PLANE_UNIT, 2))
    x_res = _number(lens.get(PLANE_X))
    if mm is None or unit is None or x_res is None:
        return None
    y_res = _number(lens.get(PLANE_Y)) or x_res
    return mm * x_res / unit, mm * y_res / unit
