"""Frozen Hugging Face ViTs (``hf:<hub repo id or local dir>``): transformers ``ViTModel``, ``Dinov2Model`` and
``Dinov2WithRegistersModel`` on the shared :class:`~dinosavi.encoders.vit.ViTBase` (SDPA blocks, CLS attention
recomputed from the last block's query/key projections).

Preprocessing comes from the source's ``preprocessor_config.json``, next to the weights.
:func:`timm_to_hf_vit_state_dict` renames timm ViT weights to transformers keys (equivalence tests, benchmarks).

Shapes: ``B`` batch, ``D`` channels, ``T`` tokens (prefix + patches), ``H, W`` pixels.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from einops import rearrange
from torch import Tensor, nn

from dinosavi.encoders.base import Preprocess, ResizeRule
from dinosavi.encoders.vit import ViTBase, check_vit_args

__all__ = ["HFViT", "timm_to_hf_vit_state_dict"]

_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


class HFViT(ViTBase):
    """A frozen Hugging Face ``ViTModel``/``Dinov2Model``/``Dinov2WithRegistersModel`` run with SDPA.

    Args:
        source: hub repo id or local directory (``config.json``, weights, ``preprocessor_config.json``).
        layers, precision, short_side: as in :class:`~dinosavi.encoders.vit.TimmViT`.

    Raises:
        RuntimeError: the model or its preprocessing config cannot be loaded or downloaded.
        FileNotFoundError: the source has no ``preprocessor_config.json`` with ``image_mean``/``image_std``.
    """

    def __init__(self, source: str, layers: tuple[int, ...] = (), precision: str = "fp32",
                 short_side: int = 480) -> None:
        super().__init__()
        import transformers

        local = Path(source).expanduser()
        if local.is_dir() and not (local / "config.json").is_file():
            raise FileNotFoundError(f"{local / 'config.json'} not found; `hf:<dir>` needs a save_pretrained dir")
        try:
            self.model = transformers.AutoModel.from_pretrained(source, attn_implementation="sdpa")
        except OSError as e:  # missing files, no network, offline mode
            raise RuntimeError(
                f"could not load the transformers model `{source}` ({e}); download the repo's config.json, "
                "model.safetensors and preprocessor_config.json elsewhere and use `hf:<local dir>`"
            ) from e
        config = self.model.config
        check_vit_args(precision, layers, config.num_hidden_layers)
        self.patch_size = int(config.patch_size)
        self.feature_dim = int(config.hidden_size)
        self.num_heads = int(config.num_attention_heads)
        self.num_prefix_tokens = 1 + int(getattr(config, "num_register_tokens", 0))
        self.layers = layers
        self.precision = precision
        self.preprocess = _hf_preprocess(source)
        self.default_resize = ResizeRule(short_side=short_side, multiple_of=self.patch_size)
        self._interpolate_kw = "interpolate_pos_encoding" in _forward_params(self.model)
        self.freeze()

    def _blocks(self) -> nn.ModuleList:
        layers = getattr(self.model, "layers", None)
        return layers if layers is not None else self.model.encoder.layer

    def _run(self, images: Tensor) -> Tensor:
        kwargs = {"interpolate_pos_encoding": True} if self._interpolate_kw else {}
        return self.model(pixel_values=images, **kwargs).last_hidden_state

    def _final_norm(self, tokens: Tensor) -> Tensor:
        return self.model.layernorm(tokens)

    def _projections(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        attn: Any = self._blocks()[-1].attention
        if hasattr(attn, "q_proj"):  # transformers >= 5
            return attn, attn.q_proj, attn.k_proj
        return attn.attention, attn.attention.query, attn.attention.key  # transformers 4

    def _attention_module(self) -> nn.Module:
        return self._projections()[0]

    def _qk(self, x: Tensor) -> tuple[Tensor, Tensor, float]:
        _, q_proj, k_proj = self._projections()
        q = rearrange(q_proj(x), "b t (n d) -> b n t d", n=self.num_heads)
        k = rearrange(k_proj(x), "b t (n d) -> b n t d", n=self.num_heads)
        return q, k, q.shape[-1] ** -0.5


def _forward_params(model: nn.Module) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _hf_preprocess(source: str) -> Preprocess:
    local = Path(source).expanduser()
    if local.is_dir():
        path = local / "preprocessor_config.json"
    else:
        import huggingface_hub

        try:
            path = Path(huggingface_hub.hf_hub_download(repo_id=source, filename="preprocessor_config.json"))
        except Exception as e:  # any hub/network/offline failure
            raise RuntimeError(
                f"could not download `{source}` `preprocessor_config.json` ({type(e).__name__}: {e}); "
                "download the repo elsewhere and use `hf:<local dir>`"
            ) from e
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; it must give image_mean/image_std for the weights")
    cfg = json.loads(path.read_text())
    if "image_mean" not in cfg or "image_std" not in cfg:
        raise FileNotFoundError(f"{path} has no image_mean/image_std; got keys {sorted(cfg)}")
    return Preprocess(mean=tuple(cfg["image_mean"]), std=tuple(cfg["image_std"]),
                      interpolation=_PIL_RESAMPLE.get(cfg.get("resample", 2), "bilinear"))


def timm_to_hf_vit_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a timm ViT state dict (CLS token, no registers, fused qkv) to a transformers >= 5 ``ViTModel``.

    Args:
        state_dict: timm keys (``blocks.{i}.attn.qkv.weight``, ...); a classifier ``head.*`` is dropped.

    Returns:
        ``ViTModel(add_pooling_layer=False)`` keys (``layers.{i}.attention.q_proj.weight``, ...).

    Raises:
        ValueError: a key has no counterpart.
    """
    fixed = {"cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
             "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
             "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
             "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}
    block = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.o_proj",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("head."):
            continue
        if key in fixed:
            out[fixed[key]] = value
            continue
        parts = key.split(".")
        if parts[0] != "blocks" or len(parts) < 4:
            raise ValueError(f"cannot map timm key `{key}` to a transformers ViTModel key")
        prefix, module, param = f"layers.{parts[1]}", ".".join(parts[2:-1]), parts[-1]
        if module == "attn.qkv":
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{prefix}.attention.{name}.{param}"] = chunk
        elif module in block:
            out[f"{prefix}.{block[module]}.{param}"] = value
        else:
            raise ValueError(f"cannot map timm key `{key}` to a transformers ViTModel key")
    return out

