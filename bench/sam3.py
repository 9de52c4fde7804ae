"""SAM 3 grounding throughput against the vocabulary size: images/s with 1, 10 and 80 phrases.

Builds a random-weight SAM 3 of a small configuration (cost does not depend on weights; the full model,
1008-px ViT-H and 200 queries, is far beyond a 2-core CPU), saves it like a checkpoint and loads it through
forge's wrapper (`udfs/sam3.py`). For each vocabulary size it times
  1. forge: each batch of images encoded once, the phrases encoded once at load, the prompt-conditioned
     detector and mask decoder run on (image, phrase) pairs, then thresholds, NMS and masks at picture size;
  2. per phrase: the model's plain forward pass once per (image, phrase), the image encoded each time (what
     calling the model with one text prompt at a time costs), outputs not post-processed.
Usage: python bench/sam3.py [--images N] [--side PX] [--hidden H] [--layers L] [--queries Q] [--device cpu|cuda]
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
from tiny_models import save_tiny_sam3  # noqa: E402
from udfs.sam3 import Sam3Grounder  # noqa: E402

COCO = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
        "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
        "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
        "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
        "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
        "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
        "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
        "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
        "teddy bear", "hair drier", "toothbrush"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--side", type=int, default=336, help="input side in pixels, a multiple of 14 (SAM 3: 1008)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--queries", type=int, default=50, help="detector queries (SAM 3: 200)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_tiny_sam3(Path(tmp) / "sam3", side=args.side, hidden=args.hidden, layers=args.layers,
                                queries=args.queries)
        params: int | None = None
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"threads {torch.get_num_threads()}, device {device}")
        print(f"model: SAM 3, random weights, {args.side}² input, hidden {args.hidden}, {args.layers} layers per block, "
              f"{args.queries} queries; {args.images} images of 640x480 in one batch")
        pictures = [Image.fromarray(render_scene(0, i, 640, 480, 3, 6).rgb) for i in range(args.images)]
        sizes = [p.size for p in pictures]
        print(f"{'phrases':>8} {'forge images/s':>15} {'per-phrase images/s':>20} {'objects':>8}")
        for phrases in (1, 10, 80):
            grounder = Sam3Grounder(str(folder), device, COCO[:phrases], threshold=0.3, max_objects=20)
            if params is None:
                params = sum(p.numel() for p in grounder.model.parameters())
            batch = np.stack([grounder.inputs.prepare(p) for p in pictures])
            grounder(batch[:1], sizes[:1])  # warm up
            start = time.perf_counter()
            found = grounder(batch, sizes)
            forge_rate = len(batch) / (time.perf_counter() - start)
            tokens = grounder.text_mask.shape[1]
            from transformers import AutoTokenizer

            text = AutoTokenizer.from_pretrained(str(folder))(COCO[:phrases], padding="max_length", max_length=tokens,
                                                             return_tensors="pt")
            pixels = grounder.pixels(batch)
            start = time.perf_counter()
            with torch.inference_mode():
                for i in range(len(batch)):
                    for p in range(phrases):
                        grounder.model(pixel_values=pixels[i:i + 1], input_ids=text["input_ids"][p:p + 1].to(device),
                                       attention_mask=text["attention_mask"][p:p + 1].to(device))
            naive_rate = len(batch) / (time.perf_counter() - start)
            print(f"{phrases:>8} {forge_rate:>15.3f} {naive_rate:>20.3f} {sum(len(f) for f in found):>8}")
        print(f"parameters: {params / 1e6:.1f} M")


if __name__ == "__main__":
    main()
