"""Draw a QA row onto its image: object boxes with labels, an optional depth overlay, a caption.

Objects are drawn in the row's order (a, b, c, ...) with fixed colours, so "the red box is
{a}" holds on every preview.
"""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# a, b, c, ...: distinct on photos and on the depth overlay's purple-to-yellow ramp
OBJECT_COLORS = [(230, 25, 75), (0, 130, 200), (60, 180, 75), (245, 130, 48), (145, 30, 180), (70, 240, 240),
                 (240, 50, 230), (128, 128, 0), (0, 0, 128), (170, 110, 40)]
LINE = 3
DEPTH_ALPHA = 0.55
MASK_ALPHA = 0.4  # a mask fill lets the object show through
# near (bright) to far (dark), a perceptual ramp like matplotlib's magma
_DEPTH_RAMP = np.array([(252, 253, 191), (252, 137, 97), (183, 55, 121), (81, 18, 124), (0, 0, 4)], dtype=np.float64)


def object_color(position: int) -> tuple[int, int, int]:
    return OBJECT_COLORS[position % len(OBJECT_COLORS)]


def depth_colors(depth: np.ndarray) -> np.ndarray:
    """(H, W) distances -> (H, W, 3) uint8 colours, near bright, far dark, robust to outliers."""
    finite = depth[np.isfinite(depth)]
    low, high = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
    scaled = np.clip((np.nan_to_num(depth, nan=high) - low) / max(high - low, 1e-9), 0, 1) * (len(_DEPTH_RAMP) - 1)
    below = np.minimum(np.floor(scaled).astype(int), len(_DEPTH_RAMP) - 2)
    t = (scaled - below)[..., None]
    return (_DEPTH_RAMP[below] * (1 - t) + _DEPTH_RAMP[below + 1] * t).round().astype(np.uint8)


def box_pixels(box: list[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A [0,1] box -> pixel corners (x1, y1, x2, y2) on an image of `size` (width, height)."""
    width, height = size
    x1, y1, x2, y2 = box
    return round(x1 * (width - 1)), round(y1 * (height - 1)), round(x2 * (width - 1)), round(y2 * (height - 1))


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def draw_objects(image: Image.Image, objects: list[dict], depth: np.ndarray | None = None,
                 masks: list[np.ndarray | None] | None = None) -> Image.Image:
    """A copy of `image` with the depth overlay (if given), each object's mask filled translucent in
    its colour (where it has one: the pixels its depth was read from), and its box and label.

    Boxes are fractions of the picture ([0,1]) drawn at `box_pixels`; the label sits above the
    box's top-left corner (inside the box when there is no room above).
    """
    out = image.convert("RGB")
    if depth is not None:
        colors = Image.fromarray(depth_colors(depth)).resize(out.size, Image.BILINEAR)
        out = Image.blend(out, colors, DEPTH_ALPHA)
    else:
        out = out.copy()
    for position, mask in enumerate(masks or []):
        if mask is not None and mask.any():
            fill = Image.new("RGB", out.size, object_color(position))
            alpha = Image.fromarray(mask.astype(np.uint8) * round(255 * MASK_ALPHA)).resize(out.size, Image.NEAREST)
            out = Image.composite(fill, out, alpha)
    draw = ImageDraw.Draw(out)
    font = _font(max(11, out.height // 28))
    width, height = out.size
    for position, obj in enumerate(objects):
        box = box_pixels(obj["box"], out.size)
        color = object_color(position)
        draw.rectangle(box, outline=color, width=LINE)
        text = f"{chr(ord('a') + position) if position < 26 else position}: {obj['label']}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        text_w, text_h = right - left + 6, bottom - top + 4
        x = max(0, min(box[0], width - text_w))  # keep the label on the picture
        y = box[1] - text_h if box[1] >= text_h else box[1] + LINE
        draw.rectangle((x, y, x + text_w, y + text_h), fill=color)
        draw.text((x + 3, y + 2 - top), text, fill=(255, 255, 255), font=font)
    return out


def caption_lines(row: dict) -> list[str]:
    """What a preview says about a row: family, question, answer (and choices), margin."""
    margin = "n/a" if row.get("margin") is None else f"{row['margin']:.3f}"
    lines = [f"{row['family']}  ({row['template_id']})", f"Q: {row['question']}", f"A: {row['answer']}"]
    if row.get("choices"):
        lines.append("choices: " + " | ".join(row["choices"]))
    lines.append(f"margin: {margin}   depth: {row['depth_kind']}")
    return lines


def with_caption(image: Image.Image, row: dict) -> Image.Image:
    """The image with a white strip below it holding the row's caption lines (for PNG output)."""
    font = _font(13)
    chars = max(20, image.width // 7)
    lines = [part for line in caption_lines(row) for part in textwrap.wrap(line, chars) or [""]]
    line_h = 17
    out = Image.new("RGB", (image.width, image.height + line_h * len(lines) + 8), (255, 255, 255))
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((4, image.height + 4 + i * line_h), line, fill=(20, 20, 20), font=font)
    return out
