"""Tiny random-weight models (depth, detectors, SAM, SAM 2, SAM 3), saved like real checkpoints.

Tests load them back through `from_pretrained(folder)`, the same path users take, so the
loading, batching and conversion code runs for real without any download.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    CLIPTokenizer,
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    Dinov2Config,
    DPTImageProcessorPil,
    OwlViTConfig,
    OwlViTForObjectDetection,
    OwlViTImageProcessorPil,
    OwlViTProcessor,
)


def save_tiny_depth(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            image_size=56, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[16, 16, 16, 16],
                                 fusion_hidden_size=16, head_hidden_size=16, depth_estimation_type="relative")
    model = DepthAnythingForDepthEstimation(config)
    with torch.no_grad():
        # a random head outputs ~0 everywhere through its final ReLU (constant depth); amplify the
        # last layer so the predicted depth varies with the image and between seeds
        model.head.conv3.weight.mul_(1e6)
        model.head.conv3.bias.fill_(2.0)
    model.save_pretrained(folder)
    DPTImageProcessorPil(size={"height": 56, "width": 56}, keep_aspect_ratio=False, ensure_multiple_of=14).save_pretrained(folder)
    return folder


def _letter_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer over single letters, its special tokens last (OWL-ViT pools at the highest id)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({c + "</w>": len(letters) + i for i, c in enumerate(letters)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>")


def _processor_settings(folder: Path, processor: str, side: int, mean: float | list[float], std: float | list[float]) -> None:
    """The settings a torchvision-only processor saves (SAM 2's, SAM 3's), written by hand: no torchvision here."""
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": processor, "do_resize": True, "size": {"height": side, "width": side}, "resample": 2,
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
        "image_mean": mean if isinstance(mean, list) else [mean] * 3, "image_std": std if isinstance(std, list) else [std] * 3}))


def save_tiny_owlvit(folder: Path, version: int = 1) -> Path:
    """OWL-ViT (version 1) or OWLv2 (version 2), which pads images to a square before detecting."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil, Owlv2Processor

    torch.manual_seed(0)
    tokenizer = _letter_tokenizer(folder)
    vocab = tokenizer.get_vocab()
    end = vocab["<|endoftext|>"]
    config_class = OwlViTConfig if version == 1 else Owlv2Config
    config = config_class(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=end, pad_token_id=end),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=16),
        projection_dim=32,
    )
    model = (OwlViTForObjectDetection if version == 1 else Owlv2ForObjectDetection)(config)
    with torch.no_grad():
        # a random box head saturates every box to a zero-width edge; without it each query
        # predicts OWL's prior box at its own patch: varied, plausible boxes
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.zero_()
    model.save_pretrained(folder)
    if version == 1:
        processor = OwlViTImageProcessorPil(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64})
        OwlViTProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    else:
        processor = Owlv2ImageProcessorPil(size={"height": 64, "width": 64})
        Owlv2Processor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def save_tiny_grounding_dino(folder: Path, max_text_len: int = 32) -> Path:
    """A tiny Grounding DINO (Swin + BERT); `max_text_len` small enough to force caption chunking."""
    from transformers import (BertConfig, BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessorPil, GroundingDinoProcessor, SwinConfig)

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "red", "blue", "green", "yellow", "purple", "orange",
             "cube", "prism", "cylinder"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, image_size=128,
                          out_indices=[2, 3, 4])
    text = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
                                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                 num_queries=20, num_feature_levels=4, encoder_n_points=2, decoder_n_points=2,
                                 max_text_len=max_text_len, use_timm_backbone=False)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    processor = GroundingDinoImageProcessorPil(size={"height": 128, "width": 128})
    GroundingDinoProcessor(image_processor=processor, tokenizer=BertTokenizer(str(folder / "vocab.txt"))).save_pretrained(folder)
    return folder


def save_tiny_sam(folder: Path, seed: int = 0) -> Path:
    """A tiny SAM (ViT encoder, prompt encoder, mask decoder) with its processor at a 64-px input."""
    from transformers import (SamConfig, SamImageProcessorPil, SamMaskDecoderConfig, SamModel, SamProcessor,
                              SamPromptEncoderConfig, SamVisionConfig)

    torch.manual_seed(seed)
    vision = SamVisionConfig(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                             patch_size=16, mlp_dim=64, global_attn_indexes=[1], window_size=2, num_pos_feats=8)
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32,
                                   iou_head_hidden_dim=16)
    config = SamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(),
                       mask_decoder_config=decoder.to_dict())
    SamModel(config).save_pretrained(folder)
    images = SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                  mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})
    SamProcessor(image_processor=images).save_pretrained(folder)
    return folder


def save_tiny_depth_pro(folder: Path, seed: int = 0) -> Path:
    """A tiny DepthPro with its field-of-view head (metric depth and a camera in one pass), and the
    settings its torchvision-only processor saves (written by hand: no torchvision here)."""
    from transformers import DepthProConfig, DepthProForDepthEstimation

    torch.manual_seed(seed)
    dino = dict(model_type="dinov2", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                patch_size=8, image_size=32)
    config = DepthProConfig(fusion_hidden_size=16, patch_size=32, intermediate_hook_ids=[1, 0], intermediate_feature_dims=[8, 8],
                            scaled_images_ratios=[0.5, 1.0], scaled_images_overlap_ratios=[0.0, 0.25],
                            scaled_images_feature_dims=[8, 8], merge_padding_value=1, use_fov_model=True,
                            num_fov_head_layers=1, image_model_config=dict(dino), patch_model_config=dict(dino),
                            fov_model_config=dict(dino))
    model = DepthProForDepthEstimation(config)
    with torch.no_grad():
        # random heads give a field of view anywhere and inverse depth in the thousands: centre them on a
        # plausible lens (~70 degrees, varying with the image) and on inverse depths of ~0.1 (metres away)
        model.fov_model.head.layers[2].weight.mul_(3)
        model.fov_model.head.layers[2].bias.fill_(70.0)
        model.head.layers[4].weight.mul_(2e-3)
        model.head.layers[4].bias.fill_(0.1)
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "DepthProImageProcessor", "do_resize": True, "size": {"height": 64, "width": 64},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5]}))
    return folder


def save_tiny_sam2(folder: Path, seed: int = 0) -> Path:
    """A tiny SAM 2 (Hiera encoder, multi-level embeddings) at a 64-px input, stretched, not padded."""
    from transformers import Sam2Config, Sam2Model

    torch.manual_seed(seed)
    backbone = dict(model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1, image_size=[64, 64],
                    blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                    num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[2, 2, 2, 2],
                    global_attention_blocks=[3], window_positional_embedding_background_size=[2, 2])
    vision = dict(backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
                  backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]], fpn_hidden_size=32)
    config = Sam2Config(vision_config=vision,
                        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16, mask_input_channels=4),
                        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=16))
    Sam2Model(config).save_pretrained(folder)
    _processor_settings(folder, "Sam2ImageProcessor", 64, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    return folder


def sam3_config(side: int = 112, hidden: int = 32, layers: int = 1, queries: int = 10):
    """A small SAM 3 (ViT, CLIP text encoder, DETR encoder/decoder, mask decoder) at a `side`-px input (a
    multiple of 14); its masks are side/14 x 4 pixels a side."""
    from transformers import Sam3Config

    grid = side // 14
    vit = dict(model_type="sam3_vit_model", hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2 * layers,
               num_attention_heads=2, image_size=side, patch_size=14, window_size=max(2, grid // 2),
               global_attn_indexes=[2 * layers - 1], pretrain_image_size=side)
    vision = dict(backbone_config=vit, fpn_hidden_size=hidden,
                  backbone_feature_sizes=[[grid * 4, grid * 4], [grid * 2, grid * 2], [grid, grid]])
    text = dict(vocab_size=54, hidden_size=hidden, intermediate_size=2 * hidden, projection_dim=hidden, num_hidden_layers=layers,
                num_attention_heads=2, max_position_embeddings=32, bos_token_id=52, eos_token_id=53, pad_token_id=53)
    block = dict(hidden_size=hidden, num_attention_heads=2, intermediate_size=2 * hidden, num_layers=layers)
    return Sam3Config(vision_config=vision, text_config=text, geometry_encoder_config=block, detr_encoder_config=block,
                      detr_decoder_config=dict(block, num_queries=queries),
                      mask_decoder_config=dict(hidden_size=hidden, num_attention_heads=2))


def finding_heads(model) -> None:
    """Random heads score every query about 0.5 and put every box in the middle: make presence near certain,
    spread the query scores (so phrases differ and some find nothing), and give each query its own plausible
    box (its reference box: centres anywhere, sides about a quarter of the picture)."""
    with torch.no_grad():
        decoder = model.detr_decoder
        decoder.presence_head.layer3.bias.fill_(4.0)
        model.dot_product_scoring.query_proj.weight.mul_(300)
        decoder.box_head.layer3.weight.zero_()
        decoder.box_head.layer3.bias.zero_()
        decoder.reference_points.weight[:, :2].normal_(0, 1.2)
        decoder.reference_points.weight[:, 2:].normal_(-1.2, 0.4)


def save_tiny_sam3(folder: Path, seed: int = 0, **size) -> Path:
    """A tiny SAM 3 with its tokenizer and processor settings; `size` as `sam3_config` takes it."""
    from transformers import Sam3Model

    torch.manual_seed(seed)
    config = sam3_config(**size)
    model = Sam3Model(config)
    finding_heads(model)
    model.save_pretrained(folder)
    _letter_tokenizer(folder).save_pretrained(folder)
    _processor_settings(folder, "Sam3ImageProcessor", config.vision_config.image_size, 0.5, 0.5)
    return folder
