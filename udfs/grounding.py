"""Open-vocabulary grounding (OWLv2 / OWL-ViT / Grounding DINO) -> labelled boxes as fractions."""

from __future__ import annotations

import torch
from PIL import Image
from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

from udfs.loading import pick_dtype


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> list[int]:
    """Greedy non-maximum suppression across labels: one object, one box."""
    order = scores.argsort(descending=True).tolist()
    keep: list[int] = []
    for i in order:
        if all(_iou(boxes[i], boxes[j]) <= iou for j in keep):
            keep.append(i)
    return keep


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    w = (torch.minimum(a[2], b[2]) - torch.maximum(a[0], b[0])).clamp(min=0)
    h = (torch.minimum(a[3], b[3]) - torch.maximum(a[1], b[1])).clamp(min=0)
    inter = float(w * h)
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


class GroundingModel:
    """Detects the spec's vocabulary in batches of PIL images."""

    def __init__(self, model: str, device: torch.device, vocabulary: list[str], threshold: float,
                 max_objects: int, nms_iou: float = 0.5):
        self.processor = AutoProcessor.from_pretrained(model)
        self.dtype = pick_dtype(device)
        self.model = AutoModelForZeroShotObjectDetection.from_pretrained(model, dtype=self.dtype).to(device).eval()
        self.device, self.vocabulary = device, list(vocabulary)
        self.threshold, self.max_objects, self.nms_iou = threshold, max_objects, nms_iou
        # OWLv2 pads images to a square before predicting, so its boxes are in the padded frame
        self.pads_square = self.model.config.model_type == "owlv2"

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image]) -> list[list[dict]]:
        inputs = self.processor(text=[self.vocabulary] * len(images), images=images, return_tensors="pt",
                                padding=True, truncation=True)
        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)) for k, v in inputs.items()}
        outputs = self.model(**inputs)
        sizes = [(max(i.size), max(i.size)) if self.pads_square else (i.height, i.width) for i in images]
        results = self.processor.post_process_grounded_object_detection(
            outputs, threshold=self.threshold, target_sizes=sizes, text_labels=[self.vocabulary] * len(images)
        )
        batch = []
        for image, result in zip(images, results):
            boxes, scores = result["boxes"].float().cpu(), result["scores"].float().cpu()
            labels = result.get("text_labels") or [self.vocabulary[int(i)] for i in result["labels"]]
            objects = []
            for i in nms(boxes, scores, self.nms_iou)[: self.max_objects]:
                x1, y1, x2, y2 = boxes[i].tolist()
                box = (max(x1 / image.width, 0.0), max(y1 / image.height, 0.0),
                       min(x2 / image.width, 1.0), min(y2 / image.height, 1.0))
                if box[2] > box[0] and box[3] > box[1]:
                    objects.append({"label": labels[i], "score": float(scores[i]), "box": box})
            batch.append(objects)
        return batch
