"""The spec language, version 1: what a user may write in `specs/*.yaml`, with defaults.

Field docs here are the reference; the README's spec section mirrors them.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceBase(Model):
    dataset: str | None = Field(None, min_length=1, max_length=200,
                                description="a name for where the images come from (e.g. objects365), written into every "
                                            "QA row as `source_dataset` so a slice can be chosen by origin or licence")


class SyntheticSource(SourceBase):
    """Procedurally rendered scenes with exact depth and boxes (needs no files, no model)."""

    kind: Literal["synthetic"]
    images: int = Field(200, ge=1, le=10_000_000, description="number of scenes to render")
    width: int = Field(320, ge=64, le=4096)
    height: int = Field(240, ge=64, le=4096)
    objects: tuple[int, int] = Field((3, 7), description="[min, max] objects per scene")
    scene: Literal["cluttered", "easy"] = Field(
        "cluttered", description="cluttered: objects overlap, hide each other in part, repeat labels and cross the "
                                 "border, as in photos; easy: boxes never touch (the box statistic alone is exact)")
    camera: Literal["fixed", "varied"] = Field(
        "fixed", description="fixed: a level camera 1.5 m up with a 60 degree field of view; varied: per scene, a "
                             "35 mm equivalent focal length of 12-55 mm (about 108-35 degrees), 1-2 m up, looking down "
                             "5-25 degrees, rolled up to 6 degrees (the oracle of the metric and gravity families)")

    @field_validator("objects")
    @classmethod
    def _objects_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high <= 12:
            raise ValueError(f"must be [min, max] with 1 <= min <= max <= 12, got [{low}, {high}]")
        return value


class AnnotationsSource(SourceBase):
    """An annotated dataset: human-drawn boxes and labels (COCO JSON for COCO, LVIS and Objects365, or Open
    Images box CSVs) over a folder of images, with depth maps (`perception: annotations`) or depth from
    models (`perception: {kind: models, grounding: annotations, ...}`). A COCO image entry may carry its
    camera (`K`, 3x3, or `fx`, `fy`, `cx`, `cy` in pixels) and its gravity (`gravity`: the direction
    gravity pulls in camera coordinates, or `pitch` and `roll` in degrees; with `camera_height` in metres)."""

    kind: Literal["annotations"]
    instances: Union[str, None] = Field(None, description="COCO instances JSON (COCO, LVIS, Objects365), relative to "
                                                          "the spec file")
    boxes: Union[str, None] = Field(None, description="Open Images box CSV (ImageID, LabelName, XMin, XMax, YMin, "
                                                      "YMax, IsTruncated, IsGroupOf, IsDepiction, ...), instead of "
                                                      "instances")
    classes: Union[str, None] = Field(None, description="Open Images class descriptions CSV (LabelName, DisplayName), "
                                                        "with boxes")
    images: str = Field(description="folder holding the images (Open Images: <ImageID>.jpg)")
    depth: Union[str, None] = Field(None, description="folder of depth maps, mirroring the images folder "
                                                      "(perception: annotations)")
    depth_format: Union[Literal["png16_mm", "npy_m"], None] = None
    depth_kind: Literal["metric", "relative"] = "metric"
    labels: Union[str, None] = Field(None, description="a YAML file mapping dataset labels to new names (rename, "
                                                       "merge) or to null (drop)")
    exclude: Union[str, list[Annotated[str, Field(min_length=1)]], None] = Field(
        None, description="labels never asked about (not objects in space): a shipped list (coco, lvis, objects365, "
                          "openimages), a text file, or a list")

    @model_validator(mode="after")
    def _one_format(self) -> AnnotationsSource:
        if (self.instances is None) == (self.boxes is None):
            raise ValueError("give instances (COCO JSON) or boxes (Open Images CSV), one of them")
        if self.boxes is not None and self.classes is None:
            raise ValueError("boxes (Open Images) need classes: the class descriptions CSV that names their LabelNames")
        if (self.depth is None) != (self.depth_format is None):
            raise ValueError("depth and depth_format go together")
        return self


class ImagesSource(SourceBase):
    """A folder or glob of photos, for model perception."""

    kind: Literal["images"]
    path: str = Field(description="folder or glob, relative to the spec file")


class UrlsSource(SourceBase):
    """A text file listing images, one per line: http(s) URLs or paths (relative to the list file)."""

    kind: Literal["urls"]
    list: str = Field(description="text file of URLs or paths, relative to the spec file; # starts a comment")


class TableSource(SourceBase):
    """Images listed in one column of a table (Parquet, CSV, JSONL or Lance), for model perception: paths
    (relative to the table's folder), http(s) URLs, image bytes, or Hugging Face `Image` structs."""

    kind: Literal["table"]
    path: str = Field(description="a table file, a folder or a glob of them, relative to the spec file")
    image_column: str = Field("image", min_length=1, description="the column holding each row's image")
    metadata: tuple[str, ...] = Field((), description="columns carried into each QA row as `source_meta` (a JSON object), "
                                                      "e.g. the source's licence or its own labels")


class HfSource(SourceBase):
    """A Hugging Face `datasets` dataset on disk, for model perception: a `save_to_disk` folder (a
    Dataset, or a DatasetDict and its `split`) or a Parquet export (files named by split, as the Hub
    writes them); the images are the column with the `Image` feature. Read in batches of rows."""

    kind: Literal["hf"]
    path: str = Field(description="the save_to_disk folder, or the Parquet export's folder, file or glob, relative to the spec file")
    split: str = Field("train", min_length=1, description="the split to read, where the dataset has several")
    image_column: str | None = Field(None, min_length=1,
                                     description="the column holding the images; default: the one column with the Image feature")
    metadata: tuple[str, ...] = Field((), description="columns carried into each QA row as `source_meta` (a JSON object), "
                                                      "e.g. the dataset's own labels or licence")


class WebDatasetSource(SourceBase):
    """WebDataset tar shards, for model perception: each sample key's image member (jpg, png, webp, ...)."""

    kind: Literal["webdataset"]
    path: str = Field(description="a .tar shard, a folder or a glob of them (e.g. shards/*.tar), relative to the spec file")
    metadata: tuple[str, ...] = Field((), description="fields of each sample's {key}.json member carried into its QA rows "
                                                      "as `source_meta` (a JSON object)")


class RecordsSource(SourceBase):
    """Perception records made elsewhere or by an earlier run: Parquet files or a Lance dataset with the
    columns of the perception record (README: "Perception from a table"), read a chunk at a time."""

    kind: Literal["records"]
    path: str = Field(description="a .parquet file, a folder or glob of them, or a .lance dataset, relative to the spec file")


ImageSource = Union[ImagesSource, UrlsSource, TableSource, HfSource, WebDatasetSource]  # images for the models
IMAGE_SOURCES = (ImagesSource, UrlsSource, TableSource, HfSource, WebDatasetSource)

Source = Annotated[Union[SyntheticSource, AnnotationsSource, ImagesSource, UrlsSource, TableSource, HfSource,
                         WebDatasetSource, RecordsSource],
                   Field(discriminator="kind")]


class DepthModel(Model):
    model: str = Field(min_length=1, description="Hugging Face id or local folder")
    batch_size: int = Field(8, ge=1, le=1024)
    concurrency: int = Field(1, ge=1, le=1024, description="model workers (one per GPU)")


class GroundingModel(Model):
    """An open-vocabulary detector (OWLv2, OWL-ViT, Grounding DINO), or SAM 3, which also segments every
    object it finds (so no segmentation pass runs)."""

    model: str = Field(min_length=1, description="Hugging Face id or local folder (a detector, or SAM 3: boxes and masks)")
    vocabulary: Union[list[Annotated[str, Field(min_length=1)]], Annotated[str, Field(min_length=1)]] = Field(
        description="names to detect: a list, a text file (one per line, relative to the spec), or coco | objects365"
    )
    threshold: float = Field(0.3, gt=0, lt=1)
    max_objects: int = Field(20, ge=1, le=300)
    batch_size: int = Field(8, ge=1, le=1024)
    concurrency: int = Field(1, ge=1, le=1024, description="model workers (one per GPU)")


class SegmentationModel(Model):
    """Box-prompted segmentation (SAM, SAM 2): a mask per detected object, so its depth is read from its own
    pixels, whatever covers its box."""

    model: str = Field(min_length=1, description="Hugging Face id or local folder (SamModel or Sam2Model)")
    batch_size: int = Field(8, ge=1, le=1024)
    concurrency: int = Field(1, ge=1, le=1024, description="model workers (one per GPU)")
    min_mask_fraction: float = Field(
        0.05, ge=0, lt=1, description="a mask covering less than this fraction of its box is discarded (the object "
                                      "falls back to the occlusion-aware box)")


class SyntheticPerception(Model):
    kind: Literal["synthetic"]


class AnnotationsPerception(Model):
    kind: Literal["annotations"]


class RecordsPerception(Model):
    kind: Literal["records"]


class AnnotationGrounding(Model):
    """Objects from the annotation source instead of a detector (`grounding: annotations` in a spec). The
    loader fills in `fingerprint`, the identity of the annotation files and label rules, so that cache keys
    say where the objects came from."""

    kind: Literal["annotations"]
    fingerprint: str = ""


class ModelsPerception(Model):
    kind: Literal["models"]
    depth: DepthModel
    grounding: Union[GroundingModel, AnnotationGrounding] = Field(
        description="a detector, or `annotations`: the boxes and labels of an annotations source")
    depth_check: Union[DepthModel, None] = Field(None, description="a second depth model, for verify.depth_agreement")
    flip_check: bool = Field(False, description="also run both models on the mirrored image, for verify.flip_consistency")
    segmentation: Union[SegmentationModel, None] = Field(
        None, description="box-prompted segmentation after grounding: object depth over each object's mask")


Perception = Annotated[
    Union[SyntheticPerception, AnnotationsPerception, RecordsPerception, ModelsPerception], Field(discriminator="kind")
]


class ObjectsSpec(Model):
    depth_percentile: float = Field(
        10.0, gt=0, lt=100, description="object depth = this percentile of depth over its pixels (front surface)"
    )
    depth_from: Literal["auto", "box_visible", "box"] = Field(
        "auto", description="which pixels: auto = the object's mask when it has one, else box_visible; box_visible = "
                            "its box minus the boxes of objects in front of it; box = the whole box")
    camera: list[Literal["annotation", "records", "exif", "model"]] = Field(
        ["annotation", "records", "exif", "model"], max_length=4,
        description="where each image's camera comes from, first found first: the annotations' K, the records "
                    "table's fx/fy/cx/cy, the photo's EXIF focal length, a depth model that predicts the field of "
                    "view (DepthPro); else the default camera (horizontal_fov_deg)")
    horizontal_fov_deg: float = Field(
        60.0, gt=1, lt=179, description="the default camera's horizontal field of view, for images whose camera is "
                                        "found nowhere in `camera` (metric and gravity families refuse it unless "
                                        "verify.allow_default_camera)"
    )

    @field_validator("camera")
    @classmethod
    def _distinct_sources(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists a camera source twice: {value}")
        return value


class Rule(Model):
    """A named custom verification rule: pairs where `keep` is false are dropped and counted."""

    name: Identifier
    keep: str = Field(min_length=1, description="boolean SQL expression over a_*/b_* columns")


class VerifySpec(Model):
    min_score: float = Field(0.0, ge=0, le=1)
    min_area: float = Field(0.0, ge=0, le=1, description="min box area, fraction of the image")
    max_area: float = Field(1.0, gt=0, le=1, description="max box area, fraction of the image")
    drop_truncated: bool = True
    unique_labels: bool = True
    max_iou: float = Field(1.0, ge=0, le=1, description="max box overlap (IoU) between the objects a question names")
    depth_agreement: bool = Field(False, description="drop pairs whose depth order the depth_check model contradicts")
    flip_consistency: bool = Field(False, description="drop tuples whose depth order or left/right the mirrored image contradicts")
    max_depth_spread: Union[float, None] = Field(
        None, gt=0, description="drop objects whose depth_spread is above this (unreliable depth); null = off")
    allow_default_camera: bool = Field(
        False, description="let metric and gravity families answer from images whose camera is only the default "
                           "(objects.horizontal_fov_deg); off: they are dropped by the `default_camera` rule")
    max_occlusion: Union[float, None] = Field(
        0.5, ge=0, le=1, description="drop objects whose depth is not from a mask and whose box is covered more than "
                                     "this by the boxes of objects in front of them; null = off")
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _area_range(self) -> VerifySpec:
        if self.min_area >= self.max_area:
            raise ValueError(f"min_area ({self.min_area}) must be below max_area ({self.max_area})")
        return self


class CustomRelation(Model):
    holds: str = Field(min_length=1, description="boolean SQL expression: true selects `answer.if_true`")
    margin: str = Field(min_length=1, description="non-negative SQL expression: how clearly `holds` is decided")
    arity: int = Field(2, ge=1, le=3, description="objects the relation reads: 1 (a), 2 (a, b) or 3 (a, b, c)")


class Answer(Model):
    if_true: str
    if_false: str


COMPARATIVE_TYPES = ("two_choice", "yes_no")


class QuestionForm(Model):
    answer_type: Literal["two_choice", "yes_no", "multiple_choice", "box", "point", "number", "label"]
    choices: list[str] = Field(default_factory=list, max_length=2, description="two options for comparative forms")
    answer: Union[Answer, str] = Field(description="{if_true, if_false} for comparative relations, else a template")
    templates: list[Annotated[str, Field(min_length=1)]] = Field(min_length=3)


class Balance(Model):
    by: Literal["auto", "position", "answer", "none"] = Field(
        "auto", description="cells to balance: answer position among choices, answer text, or none; "
                            "auto = position for two-way and multiple-choice families, none for open answers")
    max_ratio: float = Field(1.1, ge=1.0, description="largest cell / runner-up cell")


class Family(Model):
    name: Identifier
    relation: Union[
        Literal["grounding", "referring", "size", "depth_order", "left_right", "above_below", "wider", "taller",
                "distance", "horizontal_distance", "vertical_distance", "perspective_side", "perspective_view",
                "depth_extreme", "counting"],
        CustomRelation,
    ]
    min_margin: float = Field(ge=0)
    rules: list[Rule] = Field(default_factory=list, description="rules for this family only, after `verify`'s")
    set_size: tuple[int, int] = Field((3, 5), description="depth_extreme: [min, max] objects per question")
    max_count: int = Field(10, ge=1, le=10, description="counting: ask only up to this many objects")
    duplicate_iou: float = Field(0.5, gt=0, le=1, description="counting: two boxes of one label overlapping more are duplicates")
    balance: Balance = Field(default_factory=Balance)

    @field_validator("set_size")
    @classmethod
    def _set_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 3 <= value[0] <= value[1] <= 5:
            raise ValueError(f"must be [min, max] with 3 <= min <= max <= 5, got [{value[0]}, {value[1]}]")
        return value
    questions: list[QuestionForm] = Field(min_length=1)


class Output(Model):
    table: Identifier = "qa"


class Spec(Model):
    version: Literal[1]
    name: Identifier
    description: str = ""
    seed: int = Field(0, ge=0, lt=2**31)
    source: Source
    perception: Perception
    objects: ObjectsSpec = Field(default_factory=ObjectsSpec)
    verify: VerifySpec = Field(default_factory=VerifySpec)
    families: list[Family] = Field(min_length=1)
    output: Output = Field(default_factory=Output)

    @field_validator("perception", mode="before")
    @classmethod
    def _perception_shorthand(cls, value: object) -> object:
        if isinstance(value, dict) and value.get("grounding") == "annotations":
            value = {**value, "grounding": {"kind": "annotations"}}
        return {"kind": value} if isinstance(value, str) else value
