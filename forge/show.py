"""`forge show`: render QA rows onto their images, as one self-contained HTML page or PNG files.

Images come back from where the row points (`image_uri`): a `synthetic://` scene is re-rendered,
a file or URL is read. Depth overlays and object masks come from the same place the build took
them from: the synthetic scene, the annotation dataset (depth maps, COCO `segmentation`), or the
perception cache (depth maps, segmentation masks).
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from forge.draw import caption_lines, draw_objects, object_color, with_caption
from forge.errors import ForgeError
from forge.query import run_query

THUMB_LONG_SIDE = 480


@dataclass
class Shown:
    row: dict
    image: Image.Image  # boxes (and depth) drawn, no caption
    depth_missing: str | None = None  # why no depth overlay was drawn when one was asked for


def select_rows(db: Path, table: str, family: str | None, where: str | None, n: int,
                params: dict[str, object] | None = None) -> list[dict]:
    """Up to n rows in qa_id order (a content hash: a stable, well-mixed pick), filtered; `params` fill the
    $name placeholders of `where` (--param)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
        raise ForgeError(f"--table {table!r}: a table name is letters, digits and _")
    params, filters = dict(params or {}), []
    if family:
        if "family" in params:
            raise ForgeError("--param family: --family already sets $family; give one of them")
        params["family"] = family
        filters.append("family = $family")
    if where:
        filters.append(f"({where})")
    sql = (f"SELECT * FROM {table}" + (" WHERE " + " AND ".join(filters) if filters else "")
           + f" ORDER BY qa_id LIMIT {int(n)}")
    rows = run_query(db, sql, params, engine="duckdb").to_pylist()
    if not rows:
        what = " and ".join(x for x in (f"--family {family}" if family else "", f"--where {where!r}" if where else "") if x)
        raise ForgeError(f"{db}: no rows in table {table!r}" + (f" match {what}" if what else "")
                         + "; check the filter with `forge stats` or `forge query`")
    return rows


class BuildLookup:
    """Finds what a row's build read, through the spec it recorded in the `builds` table."""

    def __init__(self, db: Path):
        self.db = db
        self._specs: dict[str, object] = {}

    def _spec(self, name: str):
        if name not in self._specs:
            from forge.spec.load import load_spec

            builds = run_query(self.db, "SELECT spec_path FROM builds WHERE spec_name = $name ORDER BY started_at DESC LIMIT 1",
                               {"name": name}, engine="duckdb").to_pylist() if (self.db / "builds.lance").is_dir() else []
            self._specs[name] = load_spec(Path(builds[0]["spec_path"])) if builds else None
        return self._specs[name]


class DepthSource(BuildLookup):
    """Finds the depth map a row's build used, so the overlay shows what the answers were based on."""

    def __call__(self, row: dict, scene_depth: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
        if scene_depth is not None:
            return scene_depth, None
        if row["perception"] == "annotations":
            return self._annotated(row)
        if row["perception"].startswith("depth="):
            return self._cached(row)
        return None, f"no depth for perception {row['perception']!r}"

    def _annotated(self, row: dict) -> tuple[np.ndarray | None, str | None]:
        from forge.perception.annotations import depth_map_path, load_depth

        spec = self._spec(row["spec_name"])
        if spec is None:
            return None, f"no build of spec {row['spec_name']!r} recorded in {self.db} (table builds)"
        source = spec.spec.source
        images = (spec.base_dir / source.images).resolve()
        relative = Path(row["image_uri"]).relative_to(images) if Path(row["image_uri"]).is_relative_to(images) \
            else Path(Path(row["image_uri"]).name)
        path = depth_map_path(spec.base_dir / source.depth, str(relative), source.depth_format, unique_stem=True)
        try:
            return load_depth(path, source.depth_format), None
        except (OSError, ValueError) as exc:
            return None, f"cannot read depth map {path}: {exc}"

    def _cached(self, row: dict) -> tuple[np.ndarray | None, str | None]:
        from forge.perception.cache import DEPTH_TABLE
        from forge.perception.models import decode_depth_map
        from forge.perception.tasks import depth_key

        model = dict(part.split("=", 1) for part in row["perception"].split(";"))["depth"]
        key = depth_key(model)  # the model as seen from here: run show where the build ran
        if not (self.db / f"{DEPTH_TABLE}.lance").is_dir():
            return None, f"no perception cache in {self.db}"
        found = run_query(self.db, f"SELECT rows, cols, depth FROM {DEPTH_TABLE} WHERE image_id = $id AND key = $key",
                          {"id": row["image_id"], "key": key}, engine="duckdb").to_pylist()
        if not found:
            return None, f"image {row['image_id']} has no cached depth from {model}"
        return decode_depth_map(found[0]["depth"], found[0]["rows"], found[0]["cols"]), None


Box = tuple[float, float, float, float]


class MaskSource(BuildLookup):
    """Finds each named object's mask, as its build measured depth over it: the scene's visible
    pixels, the annotation's `segmentation`, or the cached masks of model builds (an annotation's own, else
    the segmenter's)."""

    def __call__(self, row: dict, scene) -> list[np.ndarray | None]:
        """One mask or None per named object; a mask that cannot be found (the spec moved, the cache was
        cleared) is left out rather than failing the preview."""
        try:
            return self._find(row, scene)
        except (ForgeError, OSError, ValueError):
            return [None] * len(row["objects"])

    def _find(self, row: dict, scene) -> list[np.ndarray | None]:
        if scene is not None:
            height, width = scene.depth.shape
            known = [((x1 / width, y1 / height, x2 / width, y2 / height), scene.mask(i))
                     for i, (x1, y1, x2, y2) in enumerate(o.box_px for o in scene.objects)]
            return _by_box(row, known)
        if row["perception"] == "annotations":
            return self._annotated(row)
        if row["perception"].startswith("depth="):
            return self._cached(row)
        return [None] * len(row["objects"])

    def _annotated(self, row: dict) -> list[np.ndarray | None]:
        """The masks an annotation build read, from its staged annotation table (staged again if gone)."""
        from forge.perception.annotations import check_image, detections
        from forge.perception.masks import decode
        from forge.sources.annotated import stage

        spec = self._spec(row["spec_name"])
        if spec is None:
            return [None] * len(row["objects"])
        source = spec.spec.source
        key = f"annotations:{spec.path}"
        if key not in self._specs:
            self._specs[key] = stage(source, spec.base_dir, self.db, check_image)
        name = Path(os.path.relpath(row["image_uri"], spec.resolve(source.images))).as_posix()
        entry = self._specs[key].find(name)
        if entry is None:
            return [None] * len(row["objects"])
        width, height = entry["width"], entry["height"]
        if width is None:
            width, height = _picture_size(row["image_uri"])
        try:
            found = detections(entry["objects"], height, width)
        except ValueError:  # a mask that does not fit: that image was never asked about
            return [None] * len(row["objects"])
        return _by_box(row, [(d.box, decode(d.mask, height, width) if d.mask is not None else None) for d in found])

    def _cached(self, row: dict) -> list[np.ndarray | None]:
        from forge.perception.masks import decode
        from forge.perception.tasks import TASKS, masks_task, tasks_of

        spec = self._spec(row["spec_name"])
        perception = spec.spec.perception if spec is not None else None
        if perception is None or perception.kind != "models":
            return [None] * len(row["objects"])
        found = {}
        masks = masks_task(perception)
        for name in ("grounding", masks) if masks in tasks_of(perception) else ("grounding",):
            task = TASKS[name]
            if not (self.db / f"{task.table}.lance").is_dir():
                return [None] * len(row["objects"])
            rows = run_query(self.db, f"SELECT * FROM {task.table} WHERE image_id = $id AND key = $key",
                             {"id": row["image_id"], "key": task.cache_key(perception)}, engine="duckdb").to_pylist()
            if not rows:
                return [None] * len(row["objects"])
            found[name] = rows[0]
        width, height = _picture_size(row["image_uri"])
        detections = found["grounding"]["detections"]
        masks = found[masks]["masks"] if masks in found else [None] * len(detections)
        known = [((d["x1"], d["y1"], d["x2"], d["y2"]), decode(d["mask"] or m, height, width) if d["mask"] or m else None)
                 for d, m in zip(detections, masks)]  # an annotation's own mask first, as the build measured
        return _by_box(row, known)


def _picture_size(uri: str) -> tuple[int, int]:
    from forge.sources.decoding import UNREADABLE, oriented_size, reason
    from forge.sources.reading import read

    try:
        with Image.open(io.BytesIO(read(uri))) as img:
            return oriented_size(img)
    except UNREADABLE as exc:
        raise ForgeError(f"cannot read image {uri}: {reason(exc)} (moved or deleted since the build?)") from None


def _by_box(row: dict, known: list[tuple[Box, np.ndarray | None]]) -> list[np.ndarray | None]:
    """The mask of each of the row's objects: the known object with the same box (None if none)."""
    out = []
    for obj in row["objects"]:
        match = [mask for box, mask in known if max(abs(a - b) for a, b in zip(box, obj["box"])) < 1e-6]
        out.append(match[0] if match else None)
    return out


def load_image(uri: str, size: int = THUMB_LONG_SIDE):
    """The row's picture (orientation applied; big JPEGs decoded at reduced scale, at least `size`
    on the long side) and, for synthetic scenes, the scene (exact depth and masks)."""
    if uri.startswith("synthetic://"):
        from forge.perception.synthetic import render_uri

        scene = render_uri(uri)
        return Image.fromarray(scene.rgb), scene
    from forge.sources.decoding import UNREADABLE, decode, reason
    from forge.sources.reading import read

    try:
        image, _ = decode(read(uri), size)
    except UNREADABLE as exc:
        raise ForgeError(f"cannot read image {uri}: {reason(exc)} (moved or deleted since the build?)") from None
    return image, None


def render(rows: list[dict], db: Path, depth: bool, size: int = THUMB_LONG_SIDE,
           on_row: Callable[[], None] = lambda: None, masks: bool = True) -> list[Shown]:
    """Each row drawn on its image, scaled to `size` pixels on the long side, with each object's
    mask filled in its colour (where the build had masks) and optionally the depth overlay."""
    depth_source = DepthSource(db) if depth else None
    mask_source = MaskSource(db) if masks else None
    shown = []
    for row in rows:
        image, scene = load_image(row["image_uri"], size)
        scene_depth = scene.depth if scene is not None else None
        depth_map, missing = depth_source(row, scene_depth) if depth_source else (None, None)
        object_masks = mask_source(row, scene) if mask_source else None
        scale = size / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
        shown.append(Shown(row, draw_objects(image, row["objects"], depth_map, object_masks), missing))
        on_row()
    return shown


def write_pngs(shown: list[Shown], folder: Path) -> list[Path]:
    """One PNG per row (image with boxes above a caption), named by order, family and qa_id."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, item in enumerate(shown):
        path = folder / f"{i:03d}_{item.row['family']}_{item.row['qa_id'][:12]}.png"
        with_caption(item.image, item.row).save(path)
        paths.append(path)
    return paths


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #f6f6f6; color: #222; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax({min_width}px, 1fr)); gap: 1rem; }}
figure {{ margin: 0; background: #fff; border-radius: 6px; box-shadow: 0 1px 3px #0002; overflow: hidden; }}
figure img {{ width: 100%; display: block; }}
figcaption {{ padding: .6rem .8rem; font-size: .9rem; line-height: 1.35; }}
.family {{ font-weight: 600; }} .meta {{ color: #666; font-size: .8rem; word-break: break-all; }}
.swatch {{ display: inline-block; width: .8em; height: .8em; margin-right: .25em; vertical-align: middle; }}
</style></head><body>
<h1>{title}</h1><p>{summary}</p>
<div class="grid">
{cards}
</div></body></html>
"""


def _card(item: Shown) -> str:
    row = item.row
    family, question, answer, *rest = caption_lines(row)
    objects = " ".join(f'<span class="swatch" style="background:rgb{object_color(i)}"></span>{html.escape(o["label"])}'
                       for i, o in enumerate(row["objects"]))
    extra = "".join(f"<div>{html.escape(line)}</div>" for line in rest)
    note = f'<div class="meta">no depth overlay: {html.escape(item.depth_missing)}</div>' if item.depth_missing else ""
    return (f'<figure><img src="{_data_uri(item.image)}" alt="{html.escape(row["question"])}">'
            f'<figcaption><div class="family">{html.escape(family)}</div><div>{html.escape(question)}</div>'
            f'<div><b>{html.escape(answer)}</b></div>{extra}<div>{objects}</div>'
            f'<div class="meta">{html.escape(row["qa_id"])} · {html.escape(row["image_uri"])}</div>{note}</figcaption></figure>')


def write_html(shown: list[Shown], path: Path, title: str) -> Path:
    """One self-contained page (images embedded), openable anywhere and shareable as a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    families = sorted({item.row["family"] for item in shown})
    summary = f"{len(shown)} QA rows · families: {', '.join(families)} · boxes: a red, b blue, c green"
    min_width = min(THUMB_LONG_SIDE, max(item.image.width for item in shown))
    path.write_text(PAGE.format(title=html.escape(title), summary=html.escape(summary), min_width=min_width,
                                cards="\n".join(_card(item) for item in shown)), encoding="utf-8")
    return path
