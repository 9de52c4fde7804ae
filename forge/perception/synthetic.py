"""`source: synthetic`: render scenes and report their exact boxes, masks, depth, camera and gravity as perception."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlparse

import daft
from daft import DataFrame, col

from forge.perception.camera import Camera, choose
from forge.perception.gravity import Gravity
from forge.perception.masks import encode
from forge.perception.records import PERCEIVED_TYPE, STREAM_BATCH, Detection, image_record, measured_objects
from forge.perception.synthetic_scene import Scene, render_scene
from forge.sources.identity import content_id
from forge.spec.schema import ObjectsSpec, SyntheticSource


def scene_uri(source: SyntheticSource, seed: int, index: int) -> str:
    """A URI that re-renders the exact image: `synthetic://scene?seed=..&index=..&width=..`."""
    query = {"seed": seed, "index": index, "width": source.width, "height": source.height,
             "min_objects": source.objects[0], "max_objects": source.objects[1], "clutter": int(source.scene == "cluttered")}
    if source.camera != "fixed":
        query["camera"] = source.camera
    return "synthetic://scene?" + urlencode(query)


def render_uri(uri: str) -> Scene:
    """Re-render the scene a `synthetic://` URI names (used to show or export demo images)."""
    query = {k: v[0] for k, v in parse_qs(urlparse(uri).query).items()}
    number = {k: int(v) for k, v in query.items() if k != "camera"}
    return render_scene(number["seed"], number["index"], number["width"], number["height"], number["min_objects"],
                        number["max_objects"], bool(number.get("clutter", 0)), query.get("camera", "fixed"))


@daft.cls
class RenderSynthetic:
    """Renders scene `index` and measures each object's depth on the exact depth map; each object
    comes with its mask (its visible pixels), as an instance-annotated dataset would give, and the
    scene its exact camera and gravity (as annotations)."""

    def __init__(self, source: SyntheticSource, seed: int, objects: ObjectsSpec):
        self.source, self.seed, self.objects = source, seed, objects

    @daft.method(return_dtype=PERCEIVED_TYPE)
    def __call__(self, index: int) -> dict:
        s = self.source
        scene = render_scene(self.seed, index, s.width, s.height, s.objects[0], s.objects[1], s.scene == "cluttered",
                             s.camera)
        found = []
        for i, obj in enumerate(scene.objects):
            x1, y1, x2, y2 = obj.box_px
            box = (x1 / s.width, y1 / s.height, x2 / s.width, y2 / s.height)
            found.append(Detection(obj.label, 1.0, box, encode(scene.mask(i))))
        known = Camera(*scene.intrinsics, "annotation")
        camera = choose(tuple(self.objects.camera), {"annotation": known}, s.width, s.height, self.objects.horizontal_fov_deg)
        gravity = Gravity(tuple(float(v) for v in scene.pose.up()), scene.pose.height_m, "annotation")
        objects, geometry = measured_objects(found, scene.depth, (s.width, s.height), self.objects.depth_percentile,
                                             self.objects.depth_from, camera, gravity, fit_gravity=False)
        return image_record(content_id(scene.png_bytes()), scene_uri(s, self.seed, index), s.width, s.height,
                            "metric", "synthetic", objects, geometry)


def perceive_synthetic(source: SyntheticSource, seed: int, objects: ObjectsSpec, start: int, stop: int) -> DataFrame:
    """Records of scenes [start, stop)."""
    render = RenderSynthetic(source, seed, objects)
    df = daft.from_pydict({"index": list(range(start, stop))}).into_batches(STREAM_BATCH)
    return df.select(render(col("index")).alias("perceived")).select(col("perceived").unnest())
