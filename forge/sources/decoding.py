"""Decoding image bytes on CPU workers, in bounded memory, to the RGB picture as it is displayed."""

from __future__ import annotations

import io
import re
import struct

import numpy as np
from PIL import Image, ImageOps

Image.MAX_IMAGE_PIXELS = None  # forge applies its own limit, MAX_FULL_DECODE_PIXELS, before decoding
# JPEGs decode at 1/2..1/8 scale (draft mode), so they may be huge; other formats decode at full size,
# so beyond this many pixels they are refused rather than risk gigabytes of memory
MAX_FULL_DECODE_PIXELS = 64_000_000
MAX_JPEG_PIXELS = 1_000_000_000
_ORIENTATION = 0x0112
_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height

# What PIL's format plugins raise on a malformed file, besides OSError (truncated data, "cannot identify"):
# a broken PNG chunk or TIFF header is a SyntaxError, packed fields struct.error, a short GIF EOFError,
# bad tables IndexError/KeyError/TypeError/ZeroDivisionError, a huge canvas DecompressionBombError.
# Every one means the same to a build: this image cannot be read (tests/test_bad_images.py fuzzes them).
UNREADABLE: tuple[type[BaseException], ...] = (
    OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError, ZeroDivisionError,
    Image.DecompressionBombError)


def reason(exc: BaseException) -> str:
    """What is wrong with an unreadable file, in words that are the same on every run (PIL names the
    in-memory buffer it read by its address, which would make errors rows differ from run to run)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(exc)).strip()
    return text or type(exc).__name__


def check_size(img: Image.Image) -> None:
    """Raise ValueError for images that cannot be decoded within bounded memory."""
    width, height = img.size
    limit = MAX_JPEG_PIXELS if img.format == "JPEG" else MAX_FULL_DECODE_PIXELS
    if width * height > limit:
        raise ValueError(f"image too large to decode safely: {width}x{height} {img.format} "
                         f"({width * height / 1e6:.0f} MP > {limit / 1e6:.0f} MP)")


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB for the models: 16-bit scaled to 8-bit, transparency composited over mid-gray."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") else max(float(values.max()), 1.0)
        return Image.fromarray(np.clip(values / scale * 255 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of the picture as displayed: EXIF orientations 5-8 swap the stored axes."""
    width, height = img.size
    return (height, width) if img.getexif().get(_ORIENTATION, 1) in _TRANSPOSED else (width, height)


def decode(data: bytes, longest_needed: int) -> tuple[Image.Image, tuple[int, int]]:
    """RGB image, EXIF orientation applied, reduced while decoding when far larger than needed.

    Returns the image and the picture's true (width, height) after orientation, so boxes
    stay fractions of the real picture even when it was decoded at reduced size.
    """
    with Image.open(io.BytesIO(data)) as img:
        check_size(img)
        width, height = oriented_size(img)  # before draft(), which shrinks img.size
        img.draft("RGB", (longest_needed, longest_needed))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        rgb = to_rgb(ImageOps.exif_transpose(img))
    if max(rgb.size) > 2 * longest_needed:
        rgb.thumbnail((2 * longest_needed, 2 * longest_needed), Image.BILINEAR)
    return rgb, (width, height)
