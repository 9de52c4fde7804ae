"""Monocular depth (Depth Anything / DPT / ZoeDepth) to the depth contract: distance, larger = farther.

`DepthInputs` (processor only, no weights) prepares fixed-size uint8 inputs on CPU workers;
`DepthModel` normalizes them on the device, runs the model, and returns small float16 maps.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForDepthEstimation

from forge.perception.tasks import STORED_LONG_SIDE  # 128 KiB per image at most in float16
from udfs.loading import DeviceNormalizer, pick_dtype, to_square

FLOAT16_MAX = 65504.0  # inverted near-zero disparity (sky) would overflow float16 to inf


def depth_kind(config) -> str:
    """`metric` for models trained on metric depth, `relative` (inverse depth output) otherwise."""
    if config.model_type == "zoedepth" or getattr(config, "depth_estimation_type", None) == "metric":
        return "metric"
    return "relative"


class DepthInputs:
    """The model's input geometry and normalization, read from its processor config."""

    def __init__(self, model: str):
        processor = AutoImageProcessor.from_pretrained(model)
        size = dict(getattr(processor, "size", None) or {})
        side = size.get("shortest_edge") or 518
        self.height, self.width = int(size.get("height") or side), int(size.get("width") or side)
        self.mean = list(processor.image_mean)
        self.std = list(processor.image_std)
        self.rescale = float(getattr(processor, "rescale_factor", 1 / 255))
        self.kind = depth_kind(AutoConfig.from_pretrained(model))

    def prepare(self, image: Image.Image) -> np.ndarray:
        # one fixed input shape: mixed aspect ratios batch together, boxes stay valid as fractions
        return to_square(image, self.height, self.width, pad_square=False)


def stored_shape(width: int, height: int, long_side: int = STORED_LONG_SIDE) -> tuple[int, int]:
    """(rows, cols) of the stored map: the picture's aspect ratio, long side at most `long_side`."""
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


class DepthModel:
    """Runs a depth model on batches of prepared uint8 inputs."""

    def __init__(self, model: str, device: torch.device):
        self.inputs = DepthInputs(model)
        self.dtype = pick_dtype(device)
        self.model = AutoModelForDepthEstimation.from_pretrained(model, dtype=self.dtype).to(device).eval()
        self.kind = self.inputs.kind
        self.pixels = DeviceNormalizer(self.inputs.mean, self.inputs.std, self.inputs.rescale, device, self.dtype)

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, h, w) float32 distance at the model's output resolution."""
        predicted = self.model(pixel_values=self.pixels(batch)).predicted_depth.float()
        if self.kind == "relative":
            # relative models predict inverse depth (disparity); invert so larger = farther
            predicted = 1.0 / predicted.clamp(min=1e-6)
        return predicted

    def __call__(self, batch: np.ndarray, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """Distance maps as float16, resized to each picture's aspect ratio (long side <= 256)."""
        predicted = self.predict(batch)
        maps = []
        for depth, (width, height) in zip(predicted, sizes):
            resized = F.interpolate(depth[None, None], size=stored_shape(width, height), mode="area")[0, 0]
            maps.append(resized.clamp(max=FLOAT16_MAX).to(torch.float16).cpu().numpy())
        return maps
