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


METRIC_FAMILIES = ("distance", "horizontal_distance", "vertical_distance", "size")
SIZE_WORDS = ("wide", "width")  # a size question about the width names one of these; about the height, neither


def metric_truth(family: str, question: str, objects: list) -> float:
    """The true value of a metric answer about scene objects (`SceneObject`s, in the order the question
    names them), in metres: distances between the centres of their 3D boxes, on the floor or along
    gravity, or an object's width or height."""
    if family == "size":
        [obj] = objects
        return obj.width if any(word in question for word in SIZE_WORDS) else obj.height
    a, b = (o.centre for o in objects)  # world frame: x right, y down (gravity), z forward along the floor
    if family == "distance":
        return float(((a - b) ** 2).sum() ** 0.5)
    if family == "horizontal_distance":
        return float(((a[0] - b[0]) ** 2 + (a[2] - b[2]) ** 2) ** 0.5)
    if family == "vertical_distance":
        return float(abs(a[1] - b[1]))
    raise ValueError(family)


def real_comparison(family: str, objects: list) -> tuple[bool, float]:
    """(whether a is larger than b, how many times larger the larger one is) for taller and wider."""
    a, b = ((o.height if family == "taller" else o.width) for o in objects)
    return a > b, max(a, b) / min(a, b)
