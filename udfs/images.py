"""Reading and decoding images on CPU workers, before anything reaches a model."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

Image.MAX_IMAGE_PIXELS = 30_000 * 30_000  # forge reduces big images while decoding, see `decode`
_ORIENTATION = 0x0112
_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def content_id(data: bytes) -> str:
    """Image id: hash of the file's bytes, so the same picture has one id wherever it lives."""
    return hashlib.sha256(data).hexdigest()[:32]


def read(path: str) -> bytes:
    return Path(path).read_bytes()


def decode(data: bytes, longest_needed: int) -> tuple[Image.Image, tuple[int, int]]:
    """RGB image, EXIF orientation applied, reduced while decoding when far larger than needed.

    Returns the image and the picture's true (width, height) after orientation, so boxes
    stay fractions of the real picture even when it was decoded at reduced size.
    """
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        if img.getexif().get(_ORIENTATION, 1) in _TRANSPOSED:
            width, height = height, width
        img.draft("RGB", (longest_needed, longest_needed))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        rgb = ImageOps.exif_transpose(img).convert("RGB")
    if max(rgb.size) > 2 * longest_needed:
        rgb.thumbnail((2 * longest_needed, 2 * longest_needed), Image.BILINEAR)
    return rgb, (width, height)


def to_square(image: Image.Image, height: int, width: int, pad_square: bool) -> np.ndarray:
    """Resize (optionally after padding to a square, bottom/right, mid-gray) to a fixed model input."""
    if pad_square:
        side = max(image.size)
        canvas = Image.new("RGB", (side, side), (128, 128, 128))
        canvas.paste(image, (0, 0))
        image = canvas
    return np.array(image.resize((width, height), Image.BICUBIC), dtype=np.uint8)  # writable for torch
