"""Box-prompted segmentation (SAM, SAM 2) -> one mask per detected object, as COCO RLE.

`SegmentationInputs` (processor settings only) prepares the fixed input the model expects on CPU workers:
SAM resizes the long side and pads bottom/right to a square, SAM 2 stretches the picture to the square.
`SegmentationModel` embeds each batch of images once on the device, then decodes every object's mask from
its box. Both kinds run through the same steps; what differs (the input geometry, SAM 2's multi-level
embeddings) is read from the checkpoint, not branched on by name.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers import AutoModel

from forge.perception.depth_stats import region
from forge.perception.masks import encode
from udfs.loading import DeviceNormalizer, pick_dtype, picture_masks, processor_settings, to_square

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # both processors' defaults


class SegmentationInputs:
    """The segmenter's input geometry and normalization, read from its saved processor settings (SAM 2's
    processor exists only on torchvision, so it is never instantiated)."""

    def __init__(self, model: str):
        settings = processor_settings(model)
        size = dict(settings.get("size") or {})
        pad = dict(settings.get("pad_size") or {}) if settings.get("do_pad", True) else {}
        side = int(pad.get("height") or size.get("longest_edge") or size.get("height") or 1024)
        self.height = self.width = side
        self.pads_square = bool(pad)  # SAM: long side resized, padded; SAM 2: stretched to the square
        self.mean = list(settings.get("image_mean") or IMAGENET_MEAN)
        self.std = list(settings.get("image_std") or IMAGENET_STD)
        self.rescale = float(settings.get("rescale_factor") or 1 / 255)
        self.resample = Image.Resampling(settings.get("resample", Image.BILINEAR))  # as the processor resizes

    def prepare(self, image: Image.Image) -> np.ndarray:
        # SAM pads the resized picture at the bottom/right; mid-gray normalizes to about SAM's zero padding
        return to_square(image, self.height, self.width, pad_square=self.pads_square, resample=self.resample)

    def picture_scale(self, width: int, height: int) -> tuple[float, float]:
        """Input pixels per picture fraction, across and down: where the picture lies in the square input."""
        if self.pads_square:
            scale = self.width / max(width, height)
            return width * scale, height * scale
        return float(self.width), float(self.height)


def _one(embeddings: torch.Tensor | list[torch.Tensor], i: int) -> torch.Tensor | list[torch.Tensor]:
    """Image `i`'s embedding: SAM's is one map, SAM 2's a list of levels (its decoder reads them all)."""
    return [level[i:i + 1] for level in embeddings] if isinstance(embeddings, list) else embeddings[i:i + 1]


class SegmentationModel:
    """Masks for the boxes of each image of a batch of prepared uint8 inputs."""

    def __init__(self, model: str, device: torch.device, min_mask_fraction: float):
        self.inputs = SegmentationInputs(model)
        self.dtype, self.device = pick_dtype(device), device
        self.model = AutoModel.from_pretrained(model, dtype=self.dtype).to(device).eval()
        self.min_mask_fraction = min_mask_fraction
        self.pixels = DeviceNormalizer(self.inputs.mean, self.inputs.std, self.inputs.rescale, device, self.dtype)

    @torch.inference_mode()
    def logits(self, batch: np.ndarray, boxes: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[torch.Tensor | None]:
        """Per image, (objects, h, w) mask logits over the square input (None without boxes)."""
        embeddings = self.model.get_image_embeddings(self.pixels(batch))
        out: list[torch.Tensor | None] = []
        for i, (image_boxes, (width, height)) in enumerate(zip(boxes, sizes)):
            if len(image_boxes) == 0:
                out.append(None)
                continue
            across, down = self.inputs.picture_scale(width, height)  # box fractions -> input pixels
            prompts = torch.as_tensor(image_boxes, dtype=torch.float32) * torch.tensor([across, down, across, down])
            result = self.model(image_embeddings=_one(embeddings, i), input_boxes=prompts[None].to(self.device, self.dtype),
                                multimask_output=False)
            out.append(result.pred_masks[0, :, 0].float())
        return out

    def __call__(self, batch: np.ndarray, boxes: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[list[str | None]]:
        """Per image, per box: the object's mask as RLE counts at the picture's size, or None when the
        mask covers less than `min_mask_fraction` of its box (the segmenter found nothing there)."""
        masks = []
        for logits, image_boxes, (width, height) in zip(self.logits(batch, boxes, sizes), boxes, sizes):
            if logits is None:
                masks.append([])
                continue
            across, down = self.inputs.picture_scale(width, height)  # the square's picture part
            rows = round(logits.shape[1] * down / self.inputs.height)
            cols = round(logits.shape[2] * across / self.inputs.width)
            image_masks = []
            for full, box in zip(picture_masks(logits[:, :max(rows, 1), :max(cols, 1)], width, height, 0.0), image_boxes):
                x1, y1, x2, y2 = (int(round(v)) for v in (box[0] * width, box[1] * height, box[2] * width, box[3] * height))
                inside = full[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
                enough = inside.sum() >= self.min_mask_fraction * max(inside.size, 1) and inside.any()
                # a mask never reaches outside the box it was prompted with
                image_masks.append(encode(full & region(tuple(map(float, box)), full.shape)) if enough else None)
            masks.append(image_masks)
        return masks
