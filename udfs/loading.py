"""What every model wrapper shares: resolving a model id or local folder before any worker starts (so a
missing model is one clear error), picking the device and dtype, the fixed-size, device-normalized input, its
preprocessing settings read without instantiating a processor (SAM 2's and SAM 3's exist only on torchvision),
and low-resolution mask maps brought to the picture's size."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import constants, snapshot_download, try_to_load_from_cache
from PIL import Image

from forge.errors import ForgeError
from forge.perception.masks import resized


MAX_MASK_SIDE = 1024  # mask maps are upsampled to at most this before the nearest-pixel scale to the picture
SKIPPED_WEIGHTS = ["*.onnx", "onnx/*", "*.h5", "*.msgpack", "*.tflite", "*.ot", "*.gguf"]  # other frameworks' copies


def resolve_model(model: str, offline: bool = False, echo: Callable[[str], None] = print) -> str:
    """Return a loadable id/folder, downloading a hub id into the Hugging Face cache on first use (as
    transformers users expect) unless offline (`offline`, or HF_HUB_OFFLINE=1); else raise ForgeError
    saying where forge looked and what to do."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ForgeError(f"model folder {folder} has no config.json; point to a folder written by save_pretrained")
        return str(folder.resolve())
    try:
        cached = try_to_load_from_cache(model, "config.json")
    except ValueError:  # huggingface_hub's HFValidationError: neither a folder nor something the hub could name
        raise ForgeError(f"model {model!r}: {folder.resolve()} does not exist and it is not a Hugging Face id (org/name); "
                         "give a folder written by save_pretrained, relative to the spec file, or a hub id") from None
    if isinstance(cached, str):
        return model
    if offline or constants.HF_HUB_OFFLINE:
        raise ForgeError(
            f"model {model!r} is neither a local folder nor in the Hugging Face cache (looked in {folder.resolve()} and "
            f"{constants.HF_HUB_CACHE}) and this run is offline; on a machine with network run "
            f"`forge models pull {model} --to models` and set the spec's model to the folder it prints")
    _download(model, echo)
    return model


def _download(model: str, echo: Callable[[str], None]) -> None:
    """Fetch a hub model into the Hugging Face cache, saying what and how much first."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(model, files_metadata=True)
        size = sum(s.size or 0 for s in info.siblings or [] if not any(fnmatch(s.rfilename, p) for p in SKIPPED_WEIGHTS))
        echo(f"downloading model {model} ({size / 2**20:,.0f} MiB) into the Hugging Face cache {constants.HF_HUB_CACHE} "
             f"(once; --offline or HF_HUB_OFFLINE=1 to never download)")
        snapshot_download(repo_id=model, ignore_patterns=SKIPPED_WEIGHTS)
    except Exception as exc:  # hub errors come in many types; all mean the same to the user
        reason = " ".join(str(exc).split())[:300]
        raise ForgeError(f"model {model!r} is not in the Hugging Face cache and cannot be downloaded: {reason} (check the "
                         f"id, the network, and HF_TOKEN for gated models; or `forge models pull` it elsewhere)") from None


def pull_model(model: str, to: Path) -> Path:
    """Download a model's files (weights as safetensors, configs, tokenizer) into `to/<org>__<name>`."""
    target = to / model.replace("/", "__")
    try:
        snapshot_download(repo_id=model, local_dir=target, ignore_patterns=SKIPPED_WEIGHTS)
    except Exception as exc:  # hub errors come in many types; all mean the same to the user
        reason = " ".join(str(exc).split())[:300]
        raise ForgeError(f"cannot download model {model!r}: {reason} (check the id, the network, and HF_TOKEN for gated models)") from None
    return target


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class DeviceNormalizer:
    """uint8 (B, H, W, 3) batches -> (B, 3, H, W) normalized on the device in the model's dtype,
    as the model's processor would do it on the CPU (rescale, subtract mean, divide by std)."""

    def __init__(self, mean: list[float], std: list[float], rescale: float, device: torch.device, dtype: torch.dtype):
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.rescale, self.device, self.dtype = rescale, device, dtype

    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        pixels = torch.from_numpy(batch).to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        return ((pixels * self.rescale - self.mean) / self.std).to(self.dtype)


def processor_settings(model: str) -> dict:
    """A model's saved image-processor settings (`preprocessor_config.json`, or the processor config's
    `image_processor`), as a dict: what transformers' processor would do, without needing its backend."""
    from transformers.image_processing_utils import ImageProcessingMixin

    return ImageProcessingMixin.get_image_processor_dict(model)[0]


def picture_masks(maps: torch.Tensor, width: int, height: int, threshold: float) -> np.ndarray:
    """(n, h, w) mask maps covering the whole picture -> (n, height, width) booleans: bilinear up to the
    picture's size (at most MAX_MASK_SIDE on the long side, then nearest pixel), above `threshold`, as
    transformers' SAM post-processing does."""
    scale = min(1.0, MAX_MASK_SIDE / max(width, height))
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    up = (F.interpolate(maps[None].float(), size=size, mode="bilinear", align_corners=False)[0] > threshold).cpu().numpy()
    return up if size == (height, width) else np.stack([resized(mask, (height, width)) for mask in up])


def to_square(image: Image.Image, height: int, width: int, pad_square: bool,
              resample: Image.Resampling = Image.BICUBIC) -> np.ndarray:
    """Resize (optionally after padding to a square, bottom/right, mid-gray) to a fixed model input."""
    if pad_square:
        side = max(image.size)
        canvas = Image.new("RGB", (side, side), (128, 128, 128))
        canvas.paste(image, (0, 0))
        image = canvas
    return np.array(image.resize((width, height), resample), dtype=np.uint8)  # writable for torch
