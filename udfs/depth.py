"""Monocular depth (Depth Anything / DPT / ZoeDepth / DepthPro) to the depth contract: distance, larger = farther.

`DepthInputs` (processor config only, no weights) prepares fixed-size uint8 inputs on CPU workers;
`DepthModel` normalizes them on the device, runs the model, and returns small float16 maps, with the
horizontal field of view for models that predict it. Relative models predict inverse depth, which is
inverted; DepthPro predicts canonical inverse depth and the field of view, which make metres as its
processor's post-processing makes them: depth = 1 / (inverse · W / f), f = W / (2 tan(fov / 2)).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForDepthEstimation
from transformers.image_processing_utils import ImageProcessingMixin

from forge.perception.model_config import depth_traits
from forge.perception.tasks import STORED_LONG_SIDE  # 128 KiB per image at most in float16
from udfs.loading import DeviceNormalizer, pick_dtype, to_square

FLOAT16_MAX = 65504.0  # inverted near-zero disparity (sky) would overflow float16 to inf


class DepthInputs:
    """The model's input geometry and normalization, read from its processor config."""

    def __init__(self, model: str):
        try:
            processor = vars(AutoImageProcessor.from_pretrained(model))
        except (ImportError, ValueError):  # processors that exist only on torchvision (DepthPro's): their saved settings suffice
            processor = ImageProcessingMixin.get_image_processor_dict(model)[0]
        size = dict(processor.get("size") or {})
        side = size.get("shortest_edge") or 518
        self.height, self.width = int(size.get("height") or side), int(size.get("width") or side)
        self.mean = list(processor.get("image_mean") or [0.5, 0.5, 0.5])
        self.std = list(processor.get("image_std") or [0.5, 0.5, 0.5])
        self.rescale = float(processor.get("rescale_factor") or 1 / 255)
        traits = depth_traits(AutoConfig.from_pretrained(model).to_dict())
        self.kind, self.predicts_fov = traits.kind, traits.predicts_fov

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
        self.kind, self.predicts_fov = self.inputs.kind, self.inputs.predicts_fov
        self.pixels = DeviceNormalizer(self.inputs.mean, self.inputs.std, self.inputs.rescale, device, self.dtype)

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> tuple[torch.Tensor, list[float | None]]:
        """(B, H, W, 3) uint8 -> (B, h, w) float32 distance at the model's output resolution, and each
        image's predicted horizontal field of view in degrees (None for models that predict none)."""
        outputs = self.model(pixel_values=self.pixels(batch))
        predicted = outputs.predicted_depth.float()
        if self.predicts_fov:
            fov = outputs.field_of_view.float().reshape(-1)
            # canonical inverse depth -> metres with the predicted focal length: W / f = 2 tan(fov / 2)
            scale = 2 * torch.tan(torch.deg2rad(fov) / 2)
            return 1.0 / (predicted * scale[:, None, None]).clamp(min=1e-4, max=1e4), [float(v) for v in fov.cpu()]
        if self.kind == "relative":
            # relative models predict inverse depth (disparity); invert so larger = farther
            predicted = 1.0 / predicted.clamp(min=1e-6)
        return predicted, [None] * len(predicted)

    def __call__(self, batch: np.ndarray, sizes: list[tuple[int, int]]) -> tuple[list[np.ndarray], list[float | None]]:
        """Distance maps as float16, resized to each picture's aspect ratio (long side <= 256), and the
        predicted fields of view."""
        predicted, fovs = self.predict(batch)
        maps = []
        for depth, (width, height) in zip(predicted, sizes):
            resized = F.interpolate(depth[None, None], size=stored_shape(width, height), mode="area")[0, 0]
            maps.append(resized.clamp(max=FLOAT16_MAX).to(torch.float16).cpu().numpy())
        return maps, fovs
