"""Annotation datasets written from synthetic scenes: COCO JSON, images, depth maps, and their truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from forge.perception.synthetic_scene import render_scene

SCENES = 40


def make_dataset(root: Path, depth_format: str, drop_depth_for: int | None = None, count: int = SCENES,
                 masks: bool = False, clutter: bool = True, objects: tuple[int, int] = (3, 6), camera: str = "fixed",
                 intrinsics: str | None = None, gravity: bool = False) -> dict[str, object]:
    """Write scenes as a COCO dataset (with each object's visible pixels as RLE `segmentation` when
    `masks`); returns file name -> scene. `camera` is the renderer's (`fixed` or `varied`); the camera is
    written as each image entry's `K` (`intrinsics="K"`) or as the photo's EXIF (`"exif"`), or not at
    all; `gravity` writes each entry's pitch, roll and camera height."""
    (root / "images").mkdir(parents=True)
    (root / "depth").mkdir()
    categories: dict[str, int] = {}
    images, annotations, scenes = [], [], {}
    for index in range(count):
        scene = render_scene(seed=3, index=index, width=320, height=240, min_objects=objects[0], max_objects=objects[1],
                             clutter=clutter, camera=camera)
        name = f"scene_{index:03d}.png"
        scenes[name] = scene
        (root / "images" / name).write_bytes(scene.png_bytes(exif=intrinsics == "exif"))
        if index != drop_depth_for:
            if depth_format == "png16_mm":
                Image.fromarray(np.round(scene.depth * 1000).astype(np.uint16)).save(root / "depth" / name)
            else:
                np.save(root / "depth" / f"scene_{index:03d}.npy", scene.depth)
        entry = {"id": index + 1, "file_name": name, "width": 320, "height": 240}
        if intrinsics == "K":
            fx, fy, cx, cy = scene.intrinsics
            entry["K"] = [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]
        if gravity:
            entry.update(pitch=scene.pose.pitch_deg, roll=scene.pose.roll_deg, camera_height=scene.pose.height_m)
        images.append(entry)
        for i, obj in enumerate(scene.objects):
            cat = categories.setdefault(obj.label, len(categories) + 1)
            x1, y1, x2, y2 = obj.box_px
            annotation = {"id": len(annotations) + 1, "image_id": index + 1, "category_id": cat,
                          "bbox": [x1, y1, x2 - x1, y2 - y1]}
            if masks:
                rle = coco_mask.encode(np.asfortranarray(scene.mask(i).astype(np.uint8)))
                annotation["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            annotations.append(annotation)
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n} for n, i in categories.items()]}
    (root / "instances.json").write_text(json.dumps(coco))
    return scenes


def use_annotations(spec: dict, depth_format: str, folder: str = "data") -> dict:
    """The same spec reading the dataset `make_dataset` wrote into `folder` (beside the spec)."""
    spec = dict(spec, name=spec["name"] + "_annotated", perception="annotations")
    spec["source"] = {"kind": "annotations", "instances": f"{folder}/instances.json", "images": f"{folder}/images",
                      "depth": f"{folder}/depth", "depth_format": depth_format}
    return spec
