"""Perception throughput: forge's whole model stage vs the same models' bare forward pass.

Builds random-weight models from the real architectures (cost does not depend on weights):
Depth Anything V2 Small (518²) and OWL-ViT B/32 (768²), saves them like checkpoints, and
loads them through forge's own path. Then, in one run, times
  1. the bare forward passes (pre-normalized tensors already on the device, batch after batch):
     the serial model-only ceiling = images / (depth time + grounding time);
  2. forge's perception stage on JPEG files: identify, decode + resize (threads), depth and
     grounding UDFs, cache writes, object records.
With --segmentation, SAM ViT-B (1024², box-prompted: `perception.segmentation`) runs after grounding.
Usage: python bench/perception.py [--images N] [--batch-size B] [--device auto|cpu|cuda] [--segmentation]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from forge.perception.model_perceiver import ModelPerceiver  # noqa: E402
from forge.perception.tasks import RunOptions  # noqa: E402
from forge.perception.synthetic_scene import render_scene  # noqa: E402
from forge.spec.load import load_spec  # noqa: E402
from forge.store import Store  # noqa: E402


def save_depth_anything_small(folder: Path) -> Path:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessorPil

    backbone = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, image_size=518, patch_size=14,
                            out_indices=[3, 6, 9, 12], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384, neck_hidden_sizes=[48, 96, 192, 384],
                                 fusion_hidden_size=64, head_hidden_size=32, depth_estimation_type="relative")
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessorPil(size={"height": 518, "width": 518}, keep_aspect_ratio=False, ensure_multiple_of=14,
                         image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


def save_owlvit_b32(folder: Path) -> Path:
    from tiny_models import save_tiny_owlvit  # reuse its offline tokenizer, then swap in the full-size model
    from transformers import OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessorPil, OwlViTProcessor

    save_tiny_owlvit(folder)
    processor = OwlViTProcessor.from_pretrained(folder)
    OwlViTForObjectDetection(OwlViTConfig()).save_pretrained(folder)  # defaults = OWL-ViT base patch32
    OwlViTProcessor(image_processor=OwlViTImageProcessorPil(size={"height": 768, "width": 768},
                                                             crop_size={"height": 768, "width": 768}),
                    tokenizer=processor.tokenizer).save_pretrained(folder)
    return folder


def save_sam_vit_b(folder: Path) -> Path:
    from transformers import SamConfig, SamImageProcessorPil, SamModel, SamProcessor

    SamModel(SamConfig()).save_pretrained(folder)  # defaults = SAM ViT-B, 1024² input
    SamProcessor(image_processor=SamImageProcessorPil()).save_pretrained(folder)
    return folder


def bare_forward(model, inputs: dict, images: int, batch: int, device: torch.device) -> float:
    """Seconds for `images` images through the model alone, batch after batch, after one warm-up."""
    def run() -> None:
        with torch.inference_mode():
            model(**inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()

    run()
    runs = max(1, images // batch)
    start = time.perf_counter()
    for _ in range(runs):
        run()
    per_image = (time.perf_counter() - start) / (runs * batch)
    return per_image * images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--segmentation", action="store_true", help="also run SAM ViT-B on every detected box")
    args = parser.parse_args()
    from udfs.depth import DepthModel
    from udfs.grounding import GroundingModel
    from udfs.loading import pick_device, pick_dtype

    device = pick_device(args.device)
    vocabulary = ["person", "chair", "table", "car", "dog", "cup", "bottle", "laptop"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        depth_dir, owl_dir = save_depth_anything_small(root / "da_small"), save_owlvit_b32(root / "owlvit_b32")
        photos = root / "photos"
        photos.mkdir()
        for i in range(args.images):
            Image.fromarray(render_scene(11, i, 640, 480, 3, 6, clutter=False).rgb).save(photos / f"{i:04d}.jpg", quality=90)
        spec = {"version": 1, "name": "bench", "source": {"kind": "images", "path": "photos"},
                "perception": {"kind": "models", "depth": {"model": str(depth_dir), "batch_size": args.batch_size},
                               "grounding": {"model": str(owl_dir), "vocabulary": vocabulary, "threshold": 0.5,
                                             "batch_size": args.batch_size}},
                "families": [{"name": "depth_order", "relation": "depth_order", "min_margin": 0.1, "questions": [{
                    "answer_type": "two_choice", "choices": ["{a}", "{b}"], "answer": {"if_true": "{a}", "if_false": "{b}"},
                    "templates": ["{a} or {b}?", "{a} vs {b}?", "{a} / {b}?"]}]}]}
        if args.segmentation:
            sam_dir = save_sam_vit_b(root / "sam_vit_b")
            spec["perception"]["segmentation"] = {"model": str(sam_dir), "batch_size": args.batch_size}
        (root / "bench.yaml").write_text(yaml.safe_dump(spec))
        loaded = load_spec(root / "bench.yaml")

        depth = DepthModel(str(depth_dir), device)
        owl = GroundingModel(str(owl_dir), device, vocabulary, 0.5, 20)
        b = args.batch_size
        d_pixels = torch.randn(b, 3, 518, 518, device=device, dtype=depth.dtype)
        o_pixels = torch.randn(b, 3, 768, 768, device=device, dtype=owl.dtype)
        t_depth = bare_forward(depth.model, {"pixel_values": d_pixels}, args.images, b, device)
        text = {k: v.repeat(b, 1) for k, v in owl.captions[0][0].items()}
        t_owl = bare_forward(owl.model, {"pixel_values": o_pixels, **text}, args.images, b, device)
        del depth, owl
        t_sam = 0.0
        if args.segmentation:
            from udfs.segmentation import SegmentationModel

            sam = SegmentationModel(str(sam_dir), device, 0.05)
            s_pixels = torch.randn(b, 3, 1024, 1024, device=device, dtype=sam.dtype)
            t_sam = bare_forward(sam.model.get_image_embeddings, {"pixel_values": s_pixels}, args.images, b, device)
            del sam
        ceiling = args.images / (t_depth + t_owl + t_sam)

        start = time.perf_counter()
        perceiver = ModelPerceiver(loaded, RunOptions(args.device, b), None)
        perceiver.prepare(Store(root / "db"), root / "index")
        rows = perceiver.records(0, perceiver.items).collect().to_pylist()
        stats = perceiver.stats
        t_forge = time.perf_counter() - start
        assert stats.run["depth"] == stats.run["grounding"] == len(rows) == args.images
        assert stats.run.get("segmentation", args.images) == args.images

        name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
        result = {
            "device": name, "dtype": str(pick_dtype(device)).replace("torch.", ""),
            "images": args.images, "batch_size": b, "python": platform.python_version(), "torch": torch.__version__,
            "bare_depth_img_s": round(args.images / t_depth, 2), "bare_owlvit_img_s": round(args.images / t_owl, 2),
            **({"bare_sam_encoder_img_s": round(args.images / t_sam, 3)} if args.segmentation else {}),
            "serial_ceiling_img_s": round(ceiling, 2), "forge_stage_img_s": round(args.images / t_forge, 2),
            "forge_vs_ceiling": round(args.images / t_forge / ceiling, 3),
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
