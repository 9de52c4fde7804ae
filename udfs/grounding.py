"""Open-vocabulary grounding (OWLv2 / OWL-ViT / Grounding DINO) -> labelled boxes as fractions.

`GroundingInputs` (processor only) prepares fixed-size uint8 inputs on CPU workers;
`GroundingModel` tokenizes the vocabulary once, normalizes images on the device, detects,
and suppresses duplicate boxes across labels.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForZeroShotObjectDetection, AutoProcessor

from udfs.images import to_square
from udfs.loading import pick_dtype


class GroundingInputs:
    """The detector's input geometry and normalization, read from its processor config."""

    def __init__(self, model: str):
        self.processor = AutoProcessor.from_pretrained(model)
        images = self.processor.image_processor
        self.model_type = AutoConfig.from_pretrained(model).model_type
        size = dict(getattr(images, "crop_size", None) or getattr(images, "size", None) or {})
        side = size.get("shortest_edge") or size.get("height") or 768
        self.height, self.width = int(size.get("height") or side), int(size.get("width") or side)
        # OWLv2 pads to a square before resizing, so its boxes are fractions of the padded square
        self.pads_square = self.model_type == "owlv2"
        self.mean, self.std = list(images.image_mean), list(images.image_std)
        self.rescale = float(getattr(images, "rescale_factor", 1 / 255))

    def prepare(self, image: Image.Image) -> np.ndarray:
        return to_square(image, self.height, self.width, pad_square=self.pads_square)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> list[int]:
    """Greedy non-maximum suppression across labels: one object, one box. Returns kept indexes."""
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    top_left = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    overlap = inter / (area[:, None] + area[None, :] - inter).clamp(min=1e-12)
    keep: list[int] = []
    for i in range(len(boxes)):
        if all(overlap[i, j] <= iou for j in keep):
            keep.append(i)
    return [int(order[i]) for i in keep]


class GroundingModel:
    """Detects a fixed vocabulary in batches of prepared uint8 inputs."""

    def __init__(self, model: str, device: torch.device, vocabulary: list[str], threshold: float,
                 max_objects: int, nms_iou: float = 0.5):
        self.inputs = GroundingInputs(model)
        self.dtype, self.device = pick_dtype(device), device
        self.model = AutoModelForZeroShotObjectDetection.from_pretrained(model, dtype=self.dtype).to(device).eval()
        self.vocabulary = list(vocabulary)
        self.threshold, self.max_objects, self.nms_iou = threshold, max_objects, nms_iou
        self.is_dino = self.inputs.model_type == "grounding-dino"
        text = ". ".join(self.vocabulary) + "." if self.is_dino else self.vocabulary
        tokens = self.inputs.processor.tokenizer(text, padding=True, truncation=True, return_tensors="pt")
        self.text = {k: v.to(device) for k, v in tokens.items()}
        self.mean = torch.tensor(self.inputs.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(self.inputs.std, device=device).view(1, 3, 1, 1)

    def _text_for(self, batch_size: int) -> dict[str, torch.Tensor]:
        # OWL takes (batch x queries) rows of text; Grounding DINO one caption per image
        return {k: v.repeat(batch_size, 1) for k, v in self.text.items()}

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray, sizes: list[tuple[int, int]]) -> list[list[dict]]:
        """Per image: [{label, score, box: (x1, y1, x2, y2) fractions of the picture}] by score."""
        pixels = torch.from_numpy(batch).to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        pixels = ((pixels * self.inputs.rescale - self.mean) / self.std).to(self.dtype)
        text = self._text_for(len(batch))
        outputs = self.model(pixel_values=pixels, **text)
        targets = [(max(w, h), max(w, h)) if self.inputs.pads_square else (h, w) for w, h in sizes]
        post = self.inputs.processor.post_process_grounded_object_detection
        labels_in = [self.vocabulary] * len(batch)
        if self.is_dino:
            results = post(outputs, input_ids=text["input_ids"], threshold=self.threshold,
                           text_threshold=self.threshold, target_sizes=targets, text_labels=labels_in)
        else:
            results = post(outputs, threshold=self.threshold, target_sizes=targets, text_labels=labels_in)
        return [self._objects(result, width, height) for result, (width, height) in zip(results, sizes)]

    def _objects(self, result: dict, width: int, height: int) -> list[dict]:
        boxes, scores = result["boxes"].float().cpu(), result["scores"].float().cpu()
        labels = result.get("text_labels") or [self.vocabulary[int(i)] for i in result["labels"]]
        objects = []
        for i in nms(boxes, scores, self.nms_iou)[: self.max_objects]:
            x1, y1, x2, y2 = boxes[i].tolist()
            box = (max(x1 / width, 0.0), max(y1 / height, 0.0), min(x2 / width, 1.0), min(y2 / height, 1.0))
            if box[2] > box[0] and box[3] > box[1] and labels[i] in self.vocabulary:
                objects.append({"label": labels[i], "score": float(scores[i]), "box": box})
        return objects
