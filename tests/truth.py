"""Independent ground truth for synthetic scenes, computed from the renderer's 3D layout.

Nothing here uses forge's plan: eligibility, answers and margins are re-derived with plain
Python from the scene's object list, so a bug in the columnar code cannot hide itself.
"""

from __future__ import annotations

from collections import Counter

from forge.perception.synthetic import render_uri

TRUNCATION_PX = 1


def _gap(a_low: int, a_high: int, b_low: int, b_high: int) -> float:
    """Gap between two pixel intervals along an axis, ordered by their centres (negative = overlap)."""
    return b_low - a_high if a_low + a_high < b_low + b_high else a_low - b_high


def eligible_pairs(uri: str, min_area: float, scene=None) -> dict[frozenset, dict]:
    """Unordered pairs a demo-like spec may ask about, keyed by label pair, with exact geometry."""
    scene = scene if scene is not None else render_uri(uri)
    height, width = scene.depth.shape
    counts = Counter(o.label for o in scene.objects)
    usable = []
    for obj in scene.objects:
        x1, y1, x2, y2 = obj.box_px
        truncated = x1 < TRUNCATION_PX or y1 < TRUNCATION_PX or x2 > width - TRUNCATION_PX or y2 > height - TRUNCATION_PX
        area = (x2 - x1) * (y2 - y1) / (width * height)
        if counts[obj.label] == 1 and not truncated and area >= min_area:
            usable.append(obj)
    pairs = {}
    for i, a in enumerate(usable):
        for b in usable[i + 1:]:
            near, far = sorted((a.z_front, b.z_front))
            pairs[frozenset((a.label, b.label))] = {
                "objects": {a.label: a, b.label: b},
                "depth_margin": (far - near) / near,
                "lr_margin": _gap(a.box_px[0], a.box_px[2], b.box_px[0], b.box_px[2]) / width,
                "ab_margin": _gap(a.box_px[1], a.box_px[3], b.box_px[1], b.box_px[3]) / height,
                "width": width,
            }
    return pairs
