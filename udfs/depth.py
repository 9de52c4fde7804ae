"""Monocular depth (Depth Anything / DPT / ZoeDepth) to the depth contract: distance, larger = farther."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForDepthEstimation

from udfs.loading import pick_dtype


def depth_kind(config) -> str:
    """`metric` for models trained on metric depth, `relative` (inverse depth output) otherwise."""
    if config.model_type == "zoedepth" or getattr(config, "depth_estimation_type", None) == "metric":
        return "metric"
    return "relative"


class DepthModel:
    """Runs a depth model on batches of PIL images; returns float32 distance maps at model resolution."""

    def __init__(self, model: str, device: torch.device):
        self.processor = AutoImageProcessor.from_pretrained(model)
        self.dtype = pick_dtype(device)
        self.model = AutoModelForDepthEstimation.from_pretrained(model, dtype=self.dtype).to(device).eval()
        self.device = device
        self.kind = depth_kind(self.model.config)
        size = getattr(self.processor, "size", None) or {}
        side = size.get("height") or size.get("shortest_edge") or 518
        self.side = int(side)

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image]) -> list[np.ndarray]:
        # one fixed square input: boxes stay valid as fractions, and mixed aspect ratios batch together
        square = [img.resize((self.side, self.side), Image.BILINEAR) for img in images]
        inputs = self.processor(images=square, return_tensors="pt", do_resize=False)
        pixels = inputs["pixel_values"].to(self.device, self.dtype)
        predicted = self.model(pixel_values=pixels).predicted_depth.float()
        if self.kind == "relative":
            # relative models predict inverse depth (disparity); invert so larger = farther
            predicted = 1.0 / predicted.clamp(min=1e-6)
        return [m for m in predicted.cpu().numpy().astype(np.float32)]
