"""Real-size SAM 2.1 Hiera tiny (box-prompted segmentation) and SAM 3 (text-prompted grounding) on forge's wrappers.

Builds each model at its released size with random weights (cost does not depend on weights; nothing is
downloaded): SAM 2.1 Hiera tiny is `Sam2Config()`'s defaults (Hiera 96..768 dims, blocks [1, 2, 7, 2], 1024²
input), SAM 3 is `Sam3Config()`'s defaults (ViT 1024 wide x 32 layers at 1008², CLIP text 24 layers, 200
queries), the text config's special-token ids pointed at the offline letter tokenizer of `tests/tiny_models.py`.
Each is saved like a checkpoint, with the processor settings forge reads, and loaded through forge's wrapper:
  - SAM 2.1: `udfs.segmentation.SegmentationModel`, 5 boxes per image, masks as RLE at picture size;
  - SAM 3: `udfs.sam3.Sam3Grounder` with 1 and 10 phrases (its heads spread as in `save_tiny_sam3`, so
    instances are found and their masks post-processed as a trained model's would be).
Pictures are 640x480, prepared (resized) outside the timing, as forge's CPU workers do; one warm-up image first.
Usage: python bench/sam_full.py [--models sam2,sam3] [--sam2-images N] [--sam3-images N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from forge.perception.synthetic_scene import render_scene  # noqa: E402
from tiny_models import _letter_tokenizer, _processor_settings, finding_heads  # noqa: E402

COCO10 = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light"]


def pictures(n: int) -> list[Image.Image]:
    return [Image.fromarray(render_scene(0, i, 640, 480, 3, 6).rgb) for i in range(n)]


def save_sam2_hiera_tiny(folder: Path) -> Path:
    from transformers import Sam2Config, Sam2Model

    torch.manual_seed(0)
    Sam2Model(Sam2Config()).save_pretrained(folder)  # defaults = facebook/sam2.1-hiera-tiny
    _processor_settings(folder, "Sam2ImageProcessor", 1024, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    return folder


def save_sam3(folder: Path) -> Path:
    from transformers import Sam3Config, Sam3Model

    torch.manual_seed(0)
    config = Sam3Config()  # defaults = facebook/sam3
    tokenizer = _letter_tokenizer(folder)
    vocab = tokenizer.get_vocab()
    config.text_config.bos_token_id = vocab["<|startoftext|>"]  # the letter tokenizer's ids (same cost)
    config.text_config.eos_token_id = config.text_config.pad_token_id = vocab["<|endoftext|>"]
    model = Sam3Model(config)
    finding_heads(model)  # as save_tiny_sam3: random heads would find nothing, leaving the mask work out
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _processor_settings(folder, "Sam3ImageProcessor", config.vision_config.image_size, 0.5, 0.5)
    return folder


def boxes_for(i: int) -> np.ndarray:
    """5 boxes (x1, y1, x2, y2 fractions of the picture) per image."""
    rng = np.random.default_rng(i)
    x, y = rng.uniform(0, 0.7, 5), rng.uniform(0, 0.7, 5)
    w, h = rng.uniform(0.1, 0.3, 5), rng.uniform(0.1, 0.3, 5)
    return np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)


def bench_sam2(root: Path, images: int, device: torch.device) -> None:
    from udfs.segmentation import SegmentationModel

    start = time.perf_counter()
    folder = save_sam2_hiera_tiny(root / "sam2")
    built = time.perf_counter() - start
    model = SegmentationModel(str(folder), device, 0.05)
    params = sum(p.numel() for p in model.model.parameters())
    pics = pictures(images + 1)
    batch = np.stack([model.inputs.prepare(p) for p in pics])
    sizes = [p.size for p in pics]
    boxes = [boxes_for(i) for i in range(len(pics))]
    model(batch[:1], boxes[:1], sizes[:1])  # warm up
    start = time.perf_counter()
    masks = [model(batch[i:i + 1], boxes[i:i + 1], sizes[i:i + 1]) for i in range(1, len(pics))]  # batch size 1
    one = (time.perf_counter() - start) / images
    start = time.perf_counter()
    model(batch[1:], boxes[1:], sizes[1:])  # one batch
    batched = (time.perf_counter() - start) / images
    kept = sum(m is not None for image in masks for per in image for m in per)
    print(f"SAM 2.1 Hiera tiny: {params / 1e6:.1f} M parameters, 1024² input, built+saved in {built:.0f} s; "
          f"{images} images x 5 boxes: {one:.2f} s/image ({1 / one:.3f} images/s) one at a time, "
          f"{batched:.2f} s/image ({1 / batched:.3f} images/s) in one batch of {images}; {kept} masks kept", flush=True)


def bench_sam3(root: Path, images: int, device: torch.device) -> None:
    from udfs.sam3 import Sam3Grounder

    start = time.perf_counter()
    folder = save_sam3(root / "sam3")
    print(f"SAM 3: built+saved in {time.perf_counter() - start:.0f} s", flush=True)
    pics = pictures(images + 1)
    sizes = [p.size for p in pics]
    warm = False
    for phrases in (1, 10):
        start = time.perf_counter()
        grounder = Sam3Grounder(str(folder), device, COCO10[:phrases], threshold=0.3, max_objects=20)
        loaded = time.perf_counter() - start
        params = sum(p.numel() for p in grounder.model.parameters())
        batch = np.stack([grounder.inputs.prepare(p) for p in pics])
        if not warm:
            start = time.perf_counter()
            grounder(batch[:1], sizes[:1])
            print(f"SAM 3: {params / 1e6:.1f} M parameters, 1008² input; loaded in {loaded:.0f} s, "
                  f"warm-up image {time.perf_counter() - start:.1f} s", flush=True)
            warm = True
            start = time.perf_counter()
            with torch.inference_mode():
                grounder.model.get_vision_features(grounder.pixels(batch[1:2]))
            print(f"SAM 3: image encoder alone {time.perf_counter() - start:.1f} s/image", flush=True)
        start = time.perf_counter()
        found = [grounder(batch[i:i + 1], sizes[i:i + 1]) for i in range(1, len(pics))]
        per = (time.perf_counter() - start) / images
        objects = sum(len(f[0]) for f in found)
        print(f"SAM 3, {phrases:>2} phrases: {per:.1f} s/image ({1 / per:.4f} images/s) over {images} images; {objects} objects", flush=True)
        del grounder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sam2,sam3")
    parser.add_argument("--sam2-images", type=int, default=4)
    parser.add_argument("--sam3-images", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {device}; load average {os.getloadavg()[0]:.2f}", flush=True)
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "sam2" in models:
            bench_sam2(Path(tmp), args.sam2_images, device)
        if "sam3" in models:
            bench_sam3(Path(tmp), args.sam3_images, device)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
