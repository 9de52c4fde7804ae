"""Annotated datasets with the defects real ones have, written from synthetic scenes in three formats.

`Dataset` holds the objects of each picture (boxes in pixels, labels, flags) and writes them as COCO JSON,
as LVIS-style JSON (names with "_(...)", `not_exhaustive_category_ids`, `neg_category_ids`) or as Open
Images box and class CSVs. The defects: crowd / group-of boxes, depictions, truncated objects, labels whose
boxes are not exhaustive, exact duplicate annotations, and pictures without any box. `expected_counts` and
`expected_pairs` say which questions forge's rules allow, from the annotations alone (an oracle of the rules).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from forge.perception.synthetic_scene import render_scene

WIDTH, HEIGHT = 320, 240


@dataclass
class Box:
    annotation: int  # COCO id; the Open Images CSV row of the same box is `row`
    label: str
    x1: int
    y1: int
    x2: int
    y2: int
    crowd: bool = False
    depiction: bool = False
    truncated: bool = False
    duplicate_of: int | None = None  # an exact copy of another annotation

    def fractions(self) -> list[float]:
        return [self.x1 / WIDTH, self.y1 / HEIGHT, self.x2 / WIDTH, self.y2 / HEIGHT]


@dataclass
class Picture:
    stem: str
    boxes: list[Box] = field(default_factory=list)
    not_exhaustive: set[str] = field(default_factory=set)


@dataclass
class Dataset:
    pictures: list[Picture]

    def labels(self) -> list[str]:
        return sorted({b.label for p in self.pictures for b in p.boxes})

    def write_images(self, folder: Path, scenes: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for picture in self.pictures:
            Image.fromarray(scenes[picture.stem].rgb).save(folder / f"{picture.stem}.jpg", quality=92)

    def coco(self, lvis: bool = False) -> dict:
        """COCO JSON; LVIS-style adds "_(object)" to each name and the image entries' category lists."""
        ids = {label: i + 1 for i, label in enumerate(self.labels())}
        name = (lambda label: label.replace(" ", "_") + "_(object)") if lvis else (lambda label: label)
        images, annotations = [], []
        for number, picture in enumerate(self.pictures, start=1):
            entry = {"id": number, "file_name": f"{picture.stem}.jpg", "width": WIDTH, "height": HEIGHT}
            if lvis:
                entry["not_exhaustive_category_ids"] = sorted(ids[label] for label in picture.not_exhaustive)
                present = {b.label for b in picture.boxes}
                entry["neg_category_ids"] = sorted(i for label, i in ids.items() if label not in present)[:2]
            images.append(entry)
            for box in picture.boxes:
                annotations.append({"id": box.annotation, "image_id": number, "category_id": ids[box.label],
                                    "bbox": [box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1],
                                    "area": (box.x2 - box.x1) * (box.y2 - box.y1), "iscrowd": int(box.crowd)})
        return {"images": images, "annotations": annotations,
                "categories": [{"id": i, "name": name(label)} for label, i in ids.items()]}

    def openimages(self) -> tuple[str, str]:
        """(box CSV, class descriptions CSV) with the same boxes, in the same order; ids are /m/ codes."""
        codes = {label: f"/m/0{i:04d}" for i, label in enumerate(self.labels())}
        boxes = io.StringIO()
        writer = csv.writer(boxes, lineterminator="\n")
        writer.writerow(["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax", "IsOccluded",
                         "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside"])
        for picture in self.pictures:
            for box in picture.boxes:
                x1, y1, x2, y2 = box.fractions()
                writer.writerow([picture.stem, "xclick", codes[box.label], 1, repr(x1), repr(x2), repr(y1), repr(y2),
                                 0, int(box.truncated), int(box.crowd), int(box.depiction), 0])
        classes = "".join(f"{code},{label.capitalize()}\n" for label, code in codes.items())
        return boxes.getvalue(), classes


def build_dataset(count: int, *, flags: bool, seed: int = 5) -> tuple[Dataset, dict]:
    """`count` scenes as a dataset with defects: picture 0 gets a crowd box over its first label, picture 1 an
    exact duplicate of its first box, picture 2 a non-exhaustive label, the last picture no box at all; with
    `flags` (what Open Images marks), picture 3 gets a depiction box and picture 4 a truncated object."""
    pictures, scenes = [], {}
    annotation = 100
    for index in range(count):
        scene = render_scene(seed=seed, index=index, width=WIDTH, height=HEIGHT, min_objects=4, max_objects=7, clutter=True)
        stem = f"photo_{index:03d}"
        scenes[stem] = scene
        picture = Picture(stem)
        if index != count - 1:
            for obj in scene.objects:
                annotation += 1
                picture.boxes.append(Box(annotation, obj.label, *obj.box_px))
        first = picture.boxes[0] if picture.boxes else None
        if index == 0 and first is not None:
            annotation += 1
            picture.boxes.append(Box(annotation, first.label, 40, 40, 280, 200, crowd=True))
        if index == 1 and first is not None:
            annotation += 1
            picture.boxes.append(Box(annotation, first.label, first.x1, first.y1, first.x2, first.y2,
                                     duplicate_of=first.annotation))
        if index == 2 and first is not None:
            picture.not_exhaustive.add(first.label)
        if flags and index == 3 and first is not None:  # a picture of a horse on the wall: not a horse in the room
            annotation += 1
            picture.boxes.append(Box(annotation, "horse", 150, 10, 200, 40, depiction=True))
        if flags and index == 4 and first is not None:  # cut by the photo's edge, though its box does not reach it (a crop, a mirror)
            labels = [b.label for b in picture.boxes]
            inner = next(b for b in picture.boxes if b.x1 > 1 and b.y1 > 1 and b.x2 < WIDTH - 1
                         and b.y2 < HEIGHT - 1 and labels.count(b.label) == 1)
            inner.truncated = True
        pictures.append(picture)
    return Dataset(pictures), scenes


def kept_boxes(picture: Picture) -> list[Box]:
    """The boxes staging keeps: an exact duplicate is the first annotation's object."""
    return [b for b in picture.boxes if b.duplicate_of is None]


def _iou(a: Box, b: Box) -> float:
    w = max(0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = w * h
    return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter)


def expected_counts(dataset: Dataset, max_count: int, duplicate_iou: float, lvis: bool) -> dict[tuple[str, str], int]:
    """(picture, label) -> count, for the groups counting may ask about: no crowd or depiction box among
    them, the label's boxes exhaustive (as only LVIS files say), no two boxes overlapping more than
    `duplicate_iou`."""
    out = {}
    for picture in dataset.pictures:
        boxes = kept_boxes(picture)
        for label in {b.label for b in boxes}:
            group = [b for b in boxes if b.label == label]
            if any(b.crowd or b.depiction for b in group) or (lvis and label in picture.not_exhaustive):
                continue
            if any(_iou(a, b) > duplicate_iou for a, b in combinations(group, 2)) or len(group) > max_count:
                continue
            out[(picture.stem, label)] = len(group)
    return out


def single_objects(picture: Picture, min_area: float) -> list[Box]:
    """The objects a pair question may name: one object (not a crowd, not a depiction), not cut by the
    border or marked truncated, large enough, the only one of its label in the picture."""
    boxes = kept_boxes(picture)
    labels = [b.label for b in boxes]
    out = []
    for b in boxes:
        x1, y1, x2, y2 = b.fractions()  # forge's test, as it computes it: within a pixel of a border
        touches = x1 * WIDTH < 1 or y1 * HEIGHT < 1 or (1 - x2) * WIDTH < 1 or (1 - y2) * HEIGHT < 1
        area = (b.x2 - b.x1) * (b.y2 - b.y1) / (WIDTH * HEIGHT)
        if not (b.crowd or b.depiction or b.truncated or touches or area < min_area or labels.count(b.label) > 1):
            out.append(b)
    return out


def expected_pairs(dataset: Dataset, min_area: float, min_margin: float) -> set[tuple[str, frozenset]]:
    """(picture, {annotation ids}) of the left/right pairs whose boxes are `min_margin` apart or more."""
    out = set()
    for picture in dataset.pictures:
        for a, b in combinations(single_objects(picture, min_area), 2):
            a, b = (a, b) if a.x1 + a.x2 < b.x1 + b.x2 else (b, a)
            if (b.x1 - a.x2) / WIDTH >= min_margin:
                out.add((picture.stem, frozenset({str(a.annotation), str(b.annotation)})))
    return out


def write(dataset: Dataset, scenes: dict, root: Path, fmt: str) -> dict:
    """Images plus the annotation files of `fmt` (coco, lvis, openimages) under `root`; the spec's source."""
    dataset.write_images(root / "images", scenes)
    if fmt == "openimages":
        boxes, classes = dataset.openimages()
        (root / "boxes.csv").write_text(boxes)
        (root / "classes.csv").write_text(classes)
        return {"kind": "annotations", "boxes": f"{root.name}/boxes.csv", "classes": f"{root.name}/classes.csv",
                "images": f"{root.name}/images"}
    (root / "instances.json").write_text(json.dumps(dataset.coco(lvis=fmt == "lvis")))
    return {"kind": "annotations", "instances": f"{root.name}/instances.json", "images": f"{root.name}/images"}


def rng_boxes(count: int, seed: int) -> np.ndarray:
    """Random pixel boxes (x, y, w, h) inside a 640x480 picture, for generated files."""
    rng = np.random.default_rng(seed)
    xy = np.stack([rng.integers(0, 500, count), rng.integers(0, 340, count)], axis=1)
    wh = rng.integers(5, 140, (count, 2))
    return np.concatenate([xy, wh], axis=1)


def write_big_coco(path: Path, images: int, boxes_per_image: int, categories: int = 365, seed: int = 0) -> int:
    """A COCO instances file of `images` 640x480 images with `boxes_per_image` boxes each (Objects365's
    shape: images, then annotations, then categories), written a block at a time; its size in bytes."""
    with path.open("w") as out:
        out.write('{"info": {"description": "generated"}, "images": [')
        for start in range(0, images, 100_000):
            ids = range(start + 1, min(start + 100_000, images) + 1)
            out.write(",".join(f'{{"id": {i}, "file_name": "images/v2/patch{i % 50}/objects365_{i:09d}.jpg", '
                               f'"width": 640, "height": 480}}' for i in ids) + ("," if ids[-1] < images else ""))
        out.write('], "annotations": [')
        total = images * boxes_per_image
        for start in range(0, total, 500_000):
            stop = min(start + 500_000, total)
            boxes = rng_boxes(stop - start, seed + start)
            cats = np.random.default_rng(seed + start).integers(1, categories + 1, stop - start)
            out.write(",".join(f'{{"id": {n + 1}, "image_id": {n // boxes_per_image + 1}, "category_id": {c}, '
                               f'"bbox": [{x}.5, {y}.25, {w}.0, {h}.75], "area": {w * h}, "iscrowd": 0}}'
                               for n, c, (x, y, w, h) in zip(range(start, stop), cats.tolist(), boxes.tolist()))
                      + ("," if stop < total else ""))
        out.write('], "categories": [' + ",".join(f'{{"id": {c}, "name": "Category {c}"}}'
                                                  for c in range(1, categories + 1)) + "]}")
    return path.stat().st_size


def write_big_openimages(folder: Path, images: int, boxes_per_image: int, classes: int = 600, seed: int = 0) -> int:
    """The same shape as Open Images box and class CSVs under `folder`; the box CSV's size in bytes."""
    with (folder / "classes.csv").open("w") as out:
        out.writelines(f"/m/0{c:05d},Class {c}\n" for c in range(classes))
    with (folder / "boxes.csv").open("w") as out:
        out.write("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,"
                  "IsDepiction,IsInside\n")
        total = images * boxes_per_image
        for start in range(0, total, 500_000):
            stop = min(start + 500_000, total)
            boxes = rng_boxes(stop - start, seed + start) / np.array([640, 480, 640, 480])
            cats = np.random.default_rng(seed + start).integers(0, classes, stop - start)
            out.write("".join(f"{n // boxes_per_image:016x},xclick,/m/0{c:05d},1,{x:.6f},{x + w:.6f},{y:.6f},{y + h:.6f},"
                              f"0,{n % 7 == 0:d},{n % 53 == 0:d},{n % 97 == 0:d},0\n"
                              for n, c, (x, y, w, h) in zip(range(start, stop), cats.tolist(), boxes.tolist())))
    return (folder / "boxes.csv").stat().st_size
