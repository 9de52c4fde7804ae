"""SAM 3 as a grounder: every instance of every vocabulary phrase, with its box, score and mask, in one model.

transformers' SAM 3 processor exists only on torchvision, which forge does not install; forge does what it
documents instead: the picture stretched to the model's square input (bilinear), rescaled and normalized
(`Sam3Inputs`, from the saved processor settings), the phrases tokenized as the processor does (padded to
the text encoder's 32 positions), and the outputs read as `Sam3ImageProcessor.post_process_instance_segmentation`
reads them (score = sigmoid(logit) x sigmoid(presence), kept above the threshold, boxes already x1, y1, x2, y2
fractions of the picture, mask = sigmoid of the mask logits upsampled bilinearly to the picture, above 0.5).
Text-only prompting never reaches the box-prompt encoder, the one part of the model that needs torchvision.

Each batch of images is encoded once; the phrases are encoded once, when the model loads; the prompt-conditioned
detector and mask decoder then run on (image, phrase) pairs, as many per pass as `PASS_MASK_VALUES` allows.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, Sam3Model
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

from forge.perception.masks import encode
from udfs.grounding import MIN_BOX_SIDE, nms
from udfs.loading import DeviceNormalizer, pick_dtype, picture_masks, processor_settings, to_square

PASS_MASK_VALUES = 2 ** 27  # pairs per pass x queries x mask pixels: ~0.5 GiB of float32 mask logits (8 pairs at full size)
MASK_PROBABILITY = 0.5  # the processor's mask_threshold


class Sam3Inputs:
    """SAM 3's input geometry and normalization, read from its saved processor settings."""

    def __init__(self, model: str):
        settings = processor_settings(model)
        size = dict(settings.get("size") or {})
        self.height, self.width = int(size.get("height") or 1008), int(size.get("width") or 1008)
        self.mean = list(settings.get("image_mean") or [0.5, 0.5, 0.5])
        self.std = list(settings.get("image_std") or [0.5, 0.5, 0.5])
        self.rescale = float(settings.get("rescale_factor") or 1 / 255)
        self.resample = Image.Resampling(settings.get("resample", Image.BILINEAR))

    def prepare(self, image: Image.Image) -> np.ndarray:
        # stretched, not padded: boxes and masks come out as fractions of the picture
        return to_square(image, self.height, self.width, pad_square=False, resample=self.resample)


class Sam3Grounder:
    """Finds the vocabulary in batches of prepared uint8 inputs; same interface as `GroundingModel`, and
    each object found also carries its mask (RLE counts at the picture's size, None when empty).

    Each phrase keeps at most `max_objects` instances (its best); then duplicates across phrases are
    suppressed (greedy NMS at `nms_iou`) and the image keeps its `max_objects` best.
    """

    def __init__(self, model: str, device: torch.device, vocabulary: list[str], threshold: float,
                 max_objects: int, nms_iou: float = 0.5):
        self.inputs = Sam3Inputs(model)
        self.dtype, self.device = pick_dtype(device), device
        self.model = Sam3Model.from_pretrained(model, dtype=self.dtype).to(device).eval()
        self.vocabulary = list(vocabulary)
        self.threshold, self.max_objects, self.nms_iou = threshold, max_objects, nms_iou
        config = self.model.config
        length = int(config.text_config.max_position_embeddings)
        tokens = AutoTokenizer.from_pretrained(model)(self.vocabulary, padding="max_length", max_length=length,
                                                      truncation=True, return_tensors="pt")
        self.text_mask = tokens["attention_mask"].to(device)
        with torch.inference_mode():  # the phrases, encoded once for every batch
            self.text = self.model.get_text_features(input_ids=tokens["input_ids"].to(device),
                                                     attention_mask=self.text_mask).pooler_output
        mask_rows, mask_cols = config.vision_config.backbone_feature_sizes[0]
        per_pair = int(config.detr_decoder_config.num_queries) * int(mask_rows) * int(mask_cols)
        self.pairs_per_pass = max(1, PASS_MASK_VALUES // per_pair)
        self.pixels = DeviceNormalizer(self.inputs.mean, self.inputs.std, self.inputs.rescale, device, self.dtype)

    @torch.inference_mode()
    def candidates(self, batch: np.ndarray) -> list[list[tuple[float, int, torch.Tensor, torch.Tensor]]]:
        """Per image: (score, phrase index, box as fractions, mask logits) of every instance above the
        threshold, at most `max_objects` per phrase."""
        vision = self.model.get_vision_features(self.pixels(batch))
        phrases = len(self.vocabulary)
        pairs = [(i, p) for i in range(len(batch)) for p in range(phrases)]
        found: list[list[tuple[float, int, torch.Tensor, torch.Tensor]]] = [[] for _ in range(len(batch))]
        for start in range(0, len(pairs), self.pairs_per_pass):
            chunk = pairs[start:start + self.pairs_per_pass]
            images = torch.tensor([i for i, _ in chunk], device=self.device)
            names = torch.tensor([p for _, p in chunk], device=self.device)
            embeds = Sam3VisionEncoderOutput(fpn_hidden_states=tuple(f[images] for f in vision.fpn_hidden_states),
                                             fpn_position_encoding=tuple(f[images] for f in vision.fpn_position_encoding))
            out = self.model(vision_embeds=embeds, text_embeds=BaseModelOutputWithPooling(pooler_output=self.text[names]),
                             attention_mask=self.text_mask[names])
            scores = (out.pred_logits.float().sigmoid() * out.presence_logits.float().sigmoid()).cpu()
            boxes = out.pred_boxes.float().cpu()
            for j, (i, p) in enumerate(chunk):
                wide = boxes[j, :, 2] - boxes[j, :, 0] >= MIN_BOX_SIDE
                tall = boxes[j, :, 3] - boxes[j, :, 1] >= MIN_BOX_SIDE
                keep = ((scores[j] > self.threshold) & wide & tall).nonzero().flatten()
                best = keep[scores[j, keep].argsort(descending=True)][: self.max_objects]
                found[i].extend((float(scores[j, q]), p, boxes[j, q], out.pred_masks[j, q].float().cpu()) for q in best)
        return found

    def __call__(self, batch: np.ndarray, sizes: list[tuple[int, int]]) -> list[list[dict]]:
        """Per image: [{label, score, box: (x1, y1, x2, y2) fractions of the picture, mask}] by score."""
        results = []
        for found, (width, height) in zip(self.candidates(batch), sizes):
            if not found:
                results.append([])
                continue
            boxes = torch.stack([box for _, _, box, _ in found])
            chosen = nms(boxes, torch.tensor([score for score, _, _, _ in found]), self.nms_iou)[: self.max_objects]
            masks = picture_masks(torch.stack([found[k][3] for k in chosen]).sigmoid(), width, height, MASK_PROBABILITY)
            results.append([{"label": self.vocabulary[found[k][1]], "score": found[k][0],
                             "box": tuple(float(v) for v in found[k][2].clamp(0, 1)),
                             "mask": encode(mask) if mask.any() else None} for k, mask in zip(chosen, masks)])
        return results
