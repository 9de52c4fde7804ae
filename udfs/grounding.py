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

from udfs.loading import DeviceNormalizer, pick_dtype, to_square


MIN_BOX_SIDE = 1e-3  # boxes thinner than one unit of the [0, 1000] grid are not objects (and defeat NMS)


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
    """Detects a fixed vocabulary in batches of prepared uint8 inputs.

    Scores are computed per vocabulary name: OWL models score each name directly; Grounding
    DINO scores caption tokens, so a name's score is the best score over its own tokens, and
    a long vocabulary is split into captions that fit the text encoder.
    """

    def __init__(self, model: str, device: torch.device, vocabulary: list[str], threshold: float,
                 max_objects: int, nms_iou: float = 0.5):
        self.inputs = GroundingInputs(model)
        self.dtype, self.device = pick_dtype(device), device
        self.model = AutoModelForZeroShotObjectDetection.from_pretrained(model, dtype=self.dtype).to(device).eval()
        self.vocabulary = list(vocabulary)
        self.threshold, self.max_objects, self.nms_iou = threshold, max_objects, nms_iou
        self.is_dino = self.inputs.model_type in ("grounding-dino", "mm-grounding-dino")
        tokenizer = self.inputs.processor.tokenizer
        if self.is_dino:
            self.captions = self._dino_captions(tokenizer, int(getattr(self.model.config, "max_text_len", 256)))
        else:
            tokens = tokenizer(self.vocabulary, padding=True, truncation=True, return_tensors="pt")
            self.captions = [({k: v.to(device) for k, v in tokens.items()}, None)]
        # normalized as the processor would (tests compare with it): model.pixels(batch)
        self.pixels = DeviceNormalizer(self.inputs.mean, self.inputs.std, self.inputs.rescale, device, self.dtype)

    def _dino_captions(self, tokenizer, max_len: int) -> list[tuple[dict, list[tuple[int, int]]]]:
        """Captions "a. b. c." that fit the text encoder, with each name's token span."""
        captions, names, spans, length = [], [], [], 1  # [CLS]
        pieces = [tokenizer(name, add_special_tokens=False)["input_ids"] for name in self.vocabulary]

        def close() -> None:
            text = ". ".join(names) + "."
            tokens = tokenizer(text, return_tensors="pt")
            ids = tokens["input_ids"][0].tolist()
            for (lo, hi), piece in zip(spans, (pieces[self.vocabulary.index(n)] for n in names)):
                if ids[lo:hi] != piece:
                    raise ValueError(f"cannot locate {names[spans.index((lo, hi))]!r} in the detector's caption tokens")
            captions.append(({k: v.to(self.device) for k, v in tokens.items()}, list(spans)))

        for name, piece in zip(self.vocabulary, pieces):
            if length + len(piece) + 2 > max_len and names:
                close()
                names, spans, length = [], [], 1
            spans.append((length, length + len(piece)))
            names.append(name)
            length += len(piece) + 1  # the name, then "."
        close()
        return captions

    @torch.inference_mode()
    def scores_and_boxes(self, batch: np.ndarray, sizes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, queries, names) scores and (B, queries, 4) boxes as x1, y1, x2, y2 fractions of each picture."""
        pixels = self.pixels(batch)
        scores, boxes = [], None
        for text, spans in self.captions:
            outputs = self.model(pixel_values=pixels, **{k: v.repeat(len(batch), 1) for k, v in text.items()})
            logits = outputs.logits.float().sigmoid()
            scores.append(logits if spans is None else torch.stack([logits[..., lo:hi].amax(-1) for lo, hi in spans], -1))
            boxes = outputs.pred_boxes.float()
        cx, cy, w, h = boxes.unbind(-1)
        corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
        if self.inputs.pads_square:  # fractions of the padded square -> fractions of the picture
            sides = torch.tensor([[max(wi, hi) / wi, max(wi, hi) / hi] for wi, hi in sizes], device=corners.device)
            corners = corners * sides.repeat(1, 2)[:, None, :]
        return torch.cat(scores, -1), corners.clamp(0, 1)

    def __call__(self, batch: np.ndarray, sizes: list[tuple[int, int]]) -> list[list[dict]]:
        """Per image: [{label, score, box: (x1, y1, x2, y2) fractions of the picture}] by score."""
        scores, boxes = self.scores_and_boxes(batch, sizes)
        found = []
        for image_scores, image_boxes in zip(scores.cpu(), boxes.cpu()):
            best, label = image_scores.max(-1)
            wide = image_boxes[:, 2] - image_boxes[:, 0] >= MIN_BOX_SIDE
            tall = image_boxes[:, 3] - image_boxes[:, 1] >= MIN_BOX_SIDE
            keep = (best >= self.threshold) & wide & tall
            idx = keep.nonzero().flatten()
            chosen = [int(idx[i]) for i in nms(image_boxes[idx], best[idx], self.nms_iou)][: self.max_objects]
            found.append([{"label": self.vocabulary[int(label[q])], "score": float(best[q]),
                           "box": tuple(float(v) for v in image_boxes[q])} for q in chosen])
        return found
