"""What a model predicts, read from its `config.json` without loading it (no torch), so `forge validate`
can refuse a spec whose families its models cannot answer before any weight is read.

Depth models are `metric` or `relative` by what they predict: ZoeDepth, Depth Anything V2 metric
checkpoints (`depth_estimation_type: metric`) and DepthPro with its field-of-view head are metric;
DepthPro also predicts the field of view (the camera). Everything else (Depth Anything relative
checkpoints, DPT) predicts affine-invariant inverse depth: fine for ordering, meaningless in metres.
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
