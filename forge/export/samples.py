"""What every export format writes: samples of one image with one or more of its QA rows.

A sample is one conversation about one image: one question by default, or up to `turns`
questions of the same image and split (how LLaVA and SpatialRGPT train). Every sample knows its
exported image (path, size as the trainer sees it) and carries the rows' lineage: qa_id, family,
split, width and height.
"""

from __future__ import annotations

from dataclasses import dataclass

from forge.export.images import ExportedImage, ImageWriter


@dataclass(frozen=True)
class ExportOptions:
    """Format settings that depend on how the trainer will run: Qwen2.5-VL answers boxes in pixels of the
    image its processor resized (`smart_resize` between these pixel counts; qwen-vl-finetune's defaults);
    OpenAI's format takes images inline or by path."""

    qwen_min_pixels: int = 28 * 28 * 16
    qwen_max_pixels: int = 28 * 28 * 576
    openai_inline: bool = True  # openai: the image as a base64 data URL (else its path, for loaders that open files)


def stored_answer(row: dict, width: int, height: int, options: ExportOptions) -> str:
    """A row's answer in a format that keeps forge's own notation: as the build wrote it."""
    return row["answer"]


def picture_size(width: int, height: int, options: ExportOptions) -> dict[str, int]:
    """What a sample states of its picture: the size a trainer opens it at."""
    return {"width": width, "height": height}


@dataclass(frozen=True)
class Sample:
    image: ExportedImage
    rows: list[dict]
    multi_turn: bool  # the export groups questions: lineage fields are lists, one entry per turn

    @property
    def id(self) -> str:
        return self.rows[0]["qa_id"] if len(self.rows) == 1 else f"{self.rows[0]['image_id']}-{self.rows[0]['qa_id']}"

    def meta(self) -> dict:
        """The lineage a format carries beside its own fields."""
        def field(name: str):
            values = [row[name] for row in self.rows]
            return values if self.multi_turn else values[0]

        return {"qa_id": field("qa_id"), "family": field("family"), "split": self.rows[0]["split"],
                "image_id": self.rows[0]["image_id"], "width": self.image.width, "height": self.image.height}


def make_samples(rows: list[dict], images: ImageWriter, turns: int = 1) -> list[Sample]:
    """Rows grouped by image into samples of at most `turns` questions, ordered by their first row (one
    question each: the rows' own order); every image exported once."""
    groups: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    for position, row in enumerate(rows):
        groups.setdefault((row["image_id"], row["split"]), []).append((position, row))
    out = []
    for group in groups.values():
        image = images.add(group[0][1]["image_uri"], group[0][1]["image_id"])
        for start in range(0, len(group), turns):
            chunk = group[start:start + turns]
            out.append((chunk[0][0], Sample(image, [row for _, row in chunk], turns > 1)))
    return [sample for _, sample in sorted(out, key=lambda item: item[0])]
