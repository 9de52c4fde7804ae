"""Box-prompted segmentation (SAM) -> one mask per detected object, as COCO RLE.

`SegmentationInputs` (processor only) prepares the fixed square input SAM expects (long side
resized to the input size, padded bottom/right) on CPU workers; `SegmentationModel` embeds each
batch of images once on the device, then decodes every object's mask from its box.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoModel, AutoProcessor

from forge.perception.depth_stats import region
from forge.perception.masks import encode, resized
from udfs.loading import DeviceNormalizer, pick_dtype, to_square

MAX_MASK_SIDE = 1024  # masks are upsampled to at most this before the nearest-pixel scale to the picture


class SegmentationInputs:
    """SAM's input geometry and normalization, read from its processor config."""

    def __init__(self, model: str):
        images = AutoProcessor.from_pretrained(model).image_processor
        pad = dict(getattr(images, "pad_size", None) or {})
        side = int(pad.get("height") or dict(images.size).get("longest_edge") or 1024)
        self.height = self.width = side
        self.mean, self.std = list(images.image_mean), list(images.image_std)
        self.rescale = float(getattr(images, "rescale_factor", 1 / 255))

    def prepare(self, image: Image.Image) -> np.ndarray:
        # SAM pads the resized picture at the bottom/right; mid-gray normalizes to about SAM's zero padding
        return to_square(image, self.height, self.width, pad_square=True)


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
        """Per image, (objects, h, w) mask logits over the padded square input (None without boxes)."""
        embeddings = self.model.get_image_embeddings(self.pixels(batch))
        side = self.inputs.width
        out: list[torch.Tensor | None] = []
        for embedding, image_boxes, (width, height) in zip(embeddings, boxes, sizes):
            if len(image_boxes) == 0:
                out.append(None)
                continue
            scale = side / max(width, height)  # box fractions -> pixels of the resized picture in the square
            prompts = torch.as_tensor(image_boxes, dtype=torch.float32) * torch.tensor(
                [width * scale, height * scale, width * scale, height * scale])
            result = self.model(image_embeddings=embedding[None], input_boxes=prompts[None].to(self.device, self.dtype),
                                multimask_output=False)
            out.append(result.pred_masks[0, :, 0].float())
        return out

    def __call__(self, batch: np.ndarray, boxes: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[list[str | None]]:
        """Per image, per box: the object's mask as RLE counts at the picture's size, or None when the
        mask covers less than `min_mask_fraction` of its box (SAM found nothing there)."""
        masks = []
        for logits, image_boxes, (width, height) in zip(self.logits(batch, boxes, sizes), boxes, sizes):
            if logits is None:
                masks.append([])
                continue
            long = max(width, height)
            rows, cols = round(logits.shape[1] * height / long), round(logits.shape[2] * width / long)
            picture = logits[:, :max(rows, 1), :max(cols, 1)]  # the padded square's picture part
            scale = min(1.0, MAX_MASK_SIDE / long)
            up = F.interpolate(picture[None], size=(max(1, round(height * scale)), max(1, round(width * scale))),
                               mode="bilinear", align_corners=False)[0] > 0
            image_masks = []
            for mask, box in zip(up.cpu().numpy(), image_boxes):
                full = resized(mask, (height, width)) if mask.shape != (height, width) else mask
                x1, y1, x2, y2 = (int(round(v)) for v in (box[0] * width, box[1] * height, box[2] * width, box[3] * height))
                inside = full[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
                enough = inside.sum() >= self.min_mask_fraction * max(inside.size, 1) and inside.any()
                # a mask never reaches outside the box it was prompted with
                image_masks.append(encode(full & region(tuple(map(float, box)), full.shape)) if enough else None)
            masks.append(image_masks)
        return masks

