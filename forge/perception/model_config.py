"""What a model predicts, read from its `config.json` without loading it (no torch), so `forge validate`
can refuse a spec whose families its models cannot answer before any weight is read.

Depth models are `metric` or `relative` by what they predict: ZoeDepth, Depth Anything V2 metric
checkpoints (`depth_estimation_type: metric`) and DepthPro with its field-of-view head are metric;
DepthPro also predicts the field of view (the camera). Everything else (Depth Anything relative
checkpoints, DPT) predicts affine-invariant inverse depth: fine for ordering, meaningless in metres.

Grounders and segmenters are told apart by `model_type` too: a SAM 3 grounder segments every instance it
finds (so its spec needs no segmenter), and segmentation runs box-prompted SAM or SAM 2 checkpoints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DepthTraits:
    kind: str  # metric or relative
    predicts_fov: bool


def depth_traits(config: dict) -> DepthTraits:
    """A depth model's traits from its config (as a dict)."""
    model_type = config.get("model_type")
    if model_type == "depth_pro":
        fov = bool(config.get("use_fov_model"))
        return DepthTraits("metric" if fov else "relative", fov)
    if model_type == "zoedepth" or config.get("depth_estimation_type") == "metric":
        return DepthTraits("metric", False)
    return DepthTraits("relative", False)


MASK_GROUNDERS = frozenset({"sam3", "sam3_video"})  # SAM 3 (its image-only and its video checkpoints' configs)
SEGMENTERS = frozenset({"sam", "sam2"})  # box-prompted: SamModel, Sam2Model


def makes_masks(model: str, base_dir: Path | None = None) -> bool:
    """Whether a grounding model segments what it finds (SAM 3); False while its config is not on this machine
    (a hub id not downloaded yet: a build downloads it before asking again)."""
    config = read_config(model, base_dir)
    return config is not None and config.get("model_type") in MASK_GROUNDERS


def model_problems(grounding: str | None, segmentation: str | None,
                   base_dir: Path | None = None) -> list[tuple[tuple[str, ...], str]]:
    """What is wrong with a spec's grounder and segmenter, by key path under `perception`: a segmenter that
    is no SAM or SAM 2, or one beside a grounder that already makes masks. Models whose config is not on
    this machine yet are not judged."""
    if segmentation is None:
        return []
    if grounding is not None and makes_masks(grounding, base_dir):
        return [(("segmentation",), f"the grounder {grounding} is SAM 3, which already makes a mask for every object it "
                                    f"finds: remove perception.segmentation")]
    config = read_config(segmentation, base_dir)
    kind = config.get("model_type") if config is not None else None
    if config is not None and kind not in SEGMENTERS:
        return [(("segmentation", "model"), f"{segmentation!r} is a {kind!r} model; forge runs SAM and SAM 2 checkpoints "
                                            f"(SamModel, Sam2Model, e.g. facebook/sam2.1-hiera-tiny)")]
    return []


def read_config(model: str, base_dir: Path | None = None) -> dict | None:
    """A model's config.json: from its local folder, or from the Hugging Face cache for a hub id; None
    when it is not on this machine yet (a hub id not downloaded) or not readable."""
    folder = Path(model).expanduser()
    if not folder.is_absolute() and base_dir is not None and (base_dir / folder).is_dir():
        folder = base_dir / folder
    if folder.is_dir():
        path: Path | None = folder / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(model, "config.json")
        except ValueError:  # not a valid hub id either
            return None
        path = Path(cached) if isinstance(cached, str) else None
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path is not None else None
    except (OSError, ValueError):
        return None
