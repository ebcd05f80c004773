"""Encoder weights: read from local files (never the network), or downloaded from timm's hub files.

A local file loads with ``strict=True`` after timm's ``checkpoint_filter_fn``, the named key mapping
from the original DINO/DINOv2 key names; a download failure names the file to fetch by hand.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import Tensor, nn

__all__ = ["load_state_dict_file", "load_timm_weights"]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a ``.safetensors``/``.pth``/``.bin`` file, or a directory holding ``model.safetensors`` or
    ``pytorch_model.bin``; never touches the network.

    Raises:
        FileNotFoundError: the path or the directory's weight file does not exist.
        ValueError: an unsupported file type.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        found = [path / f for f in _WEIGHT_FILES if (path / f).is_file()]
        if not found:
            raise FileNotFoundError(f"no weights in directory {path}; expected one of {list(_WEIGHT_FILES)}")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix in (".pth", ".pt", ".bin"):
        obj = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("model", "state_dict", "teacher"):
            if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
                obj = obj[key]
        return dict(obj)
    raise ValueError(f"unsupported weights file {path}; expected .safetensors, .pth, .pt or .bin")


def load_timm_weights(model: TimmVisionTransformer, weights: str | Path | None) -> TimmVisionTransformer:
    """Load weights into a timm ViT: a local file/dir, or the model's Hugging Face hub file when None.

    Local files go through timm's ``checkpoint_filter_fn`` (original DINO/DINOv2 key names) and load with
    ``strict=True``.

    Raises:
        RuntimeError: ``weights`` is None and the hub file could not be downloaded; the message names the
            file and how to point ``encoder.weights=<path>`` at a local copy.
    """
    if weights is None:
        weights = _download_timm_weights(model)
    state_dict = checkpoint_filter_fn(load_state_dict_file(weights), model)
    if isinstance(model.head, nn.Identity):  # a feature extractor: drop any classifier in the file
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
    model.load_state_dict(state_dict, strict=True)
    return model


def _download_timm_weights(model: nn.Module) -> Path:
    import huggingface_hub

    cfg = getattr(model, "pretrained_cfg", None) or {}
    repo_id = cfg.get("hf_hub_id")
    name = cfg.get("architecture", type(model).__name__)
    if not repo_id:
        raise RuntimeError(f"timm model `{name}` has no hub weights; pass encoder.weights=<path>")
    filename = "model.safetensors"
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as e:  # any hub/network/offline failure
        raise RuntimeError(
            f"could not download `{repo_id}` `{filename}` ({type(e).__name__}: {e}). Download "
            f"https://huggingface.co/{repo_id}/resolve/main/{filename} elsewhere and set "
            f"encoder.weights=<path to {filename} or its folder>"
        ) from e
