"""Frozen Vision Transformers: any timm ViT, Hugging Face ViT/DINOv2, and a small random ViT.

Every block runs ``F.scaled_dot_product_attention``; the last layer's CLS attention is recomputed
from that block's query/key projections of its (captured) input, so no block has to materialise its
attention matrix. Positional embeddings are resampled (plain bicubic, as in DINO) to the input's patch
grid.

Shapes: ``B`` batch, ``D`` channels, ``N = h*w`` patches, ``T`` tokens (prefix + patches),
``H, W`` pixels.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from dinosavi.encoders.base import EncoderOutput, FrozenEncoder, Preprocess, ResizeRule

__all__ = [
    "PRECISIONS",
    "HFViT",
    "TimmViT",
    "VisionTransformer",
    "cls_attention",
    "load_state_dict_file",
    "load_timm_weights",
    "timm_to_hf_vit_state_dict",
]

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def cls_attention(q: Tensor, k: Tensor, scale: float, num_prefix_tokens: int,
                  grid: tuple[int, int]) -> Tensor:
    """The CLS token's attention over the patches, per head.

    Args:
        q: ``(B, heads, T, d)`` queries of one layer; token 0 is the CLS token.
        k: ``(B, heads, T, d)`` keys; the first ``num_prefix_tokens`` are CLS (+ register) tokens.
        scale: the attention logit scale, usually ``d ** -0.5``.
        num_prefix_tokens: tokens before the patches, dropped after the softmax over all tokens.
        grid: ``(h, w)`` with ``h * w = T - num_prefix_tokens``.

    Returns:
        ``(B, heads, h, w)``, non-negative, summing to at most 1 per head.
    """
    with torch.autocast(q.device.type, enabled=False):
        logits = (q[:, :, :1].float() * scale) @ k.float().transpose(-2, -1)  # (B, heads, 1, T)
    attn = logits.softmax(dim=-1)[:, :, 0, num_prefix_tokens:]
    return rearrange(attn, "b n (h w) -> b n h w", h=grid[0], w=grid[1])


def _autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    if precision == "fp32" or device.type != "cuda":
        return nullcontext()
    return torch.autocast(device_type="cuda", dtype=PRECISIONS[precision])


def _check_args(precision: str, layers: tuple[int, ...], depth: int) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision `{precision}`; expected one of {sorted(PRECISIONS)}")
    for i in layers:
        if not -depth <= i < depth:
            raise ValueError(f"layer index {i} out of range for a ViT with {depth} blocks")


class _Capture:
    """Forward hooks that keep one module's input and some modules' outputs for a single call."""

    def __init__(self) -> None:
        self.handles: list[RemovableHandle] = []
        self.attn_input: Tensor | None = None
        self.outputs: dict[int, Tensor] = {}

    def input_of(self, module: nn.Module) -> None:
        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self.attn_input = args[0] if args else kwargs["hidden_states"]

        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def output_of(self, index: int, module: nn.Module) -> None:
        def hook(_m: nn.Module, _args: tuple[Any, ...], out: Any) -> None:
            self.outputs[index] = out[0] if isinstance(out, tuple) else out

        self.handles.append(module.register_forward_hook(hook))

    def __enter__(self) -> _Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()


class _ViTBase(FrozenEncoder):
    """Shared token -> feature-map logic; subclasses provide ``_run`` and ``_qk``."""

    num_prefix_tokens: int
    layers: tuple[int, ...]
    precision: str

    def _blocks(self) -> nn.ModuleList:
        raise NotImplementedError

    def _run(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> ``(B, T, D)`` last-layer tokens after the final norm."""
        raise NotImplementedError

    def _final_norm(self, tokens: Tensor) -> Tensor:
        raise NotImplementedError

    def _attention_module(self) -> nn.Module:
        raise NotImplementedError

    def _qk(self, x: Tensor) -> tuple[Tensor, Tensor, float]:
        """``(B, T, D)`` last-block attention input -> q, k ``(B, heads, T, d)`` and the scale."""
        raise NotImplementedError

    def _to_map(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        return rearrange(tokens[:, self.num_prefix_tokens:], "b (h w) d -> b d h w", h=grid[0], w=grid[1])

    def forward(self, images: Tensor) -> EncoderOutput:
        """Encode normalised images.

        Args:
            images: ``(B, 3, H, W)`` normalised with ``preprocess``; ``H, W`` multiples of ``patch_size``.

        Returns:
            features ``(B, D, h, w)`` after the final norm, CLS attention ``(B, heads, h, w)`` of the last
            block, and for each of ``layers`` the normed ``(B, D, h, w)`` output of that block.
        """
        H, W = images.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {self.patch_size}")
        grid = (H // self.patch_size, W // self.patch_size)
        blocks = self._blocks()
        with _Capture() as cap:
            cap.input_of(self._attention_module())
            for i in self.layers:
                cap.output_of(i % len(blocks), blocks[i])
            with _autocast(images.device, self.precision):
                tokens = self._run(images)
                assert cap.attn_input is not None, "the last block's attention was not called"
                q, k, scale = self._qk(cap.attn_input)
                extra = tuple(self._to_map(self._final_norm(cap.outputs[i % len(blocks)]), grid).float()
                              for i in self.layers)
        attn = cls_attention(q, k, scale, self.num_prefix_tokens, grid)  # float32, outside autocast
        return EncoderOutput(self._to_map(tokens, grid).float(), attn, extra)


class TimmViT(_ViTBase):
    """A frozen timm ``VisionTransformer`` (DINO, DINOv2, DINOv2 with registers, ...).

    Args:
        model: a timm ViT built with ``dynamic_img_size=True``; its weights are used as they are.
        preprocess: normalisation of the weights; taken from ``model.pretrained_cfg`` when None.
        layers: indices of blocks whose normed outputs are returned as ``intermediate``.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast, CUDA only).
        short_side: short side of ``default_resize``.
    """

    def __init__(self, model: TimmVisionTransformer, preprocess: Preprocess | None = None,
                 layers: tuple[int, ...] = (), precision: str = "fp32", short_side: int = 480) -> None:
        super().__init__()
        if not getattr(model, "dynamic_img_size", False) or model.pos_embed is None:
            raise ValueError(
                f"{type(model).__name__} must have a position embedding and dynamic_img_size=True"
            )
        _check_args(precision, layers, len(model.blocks))
        attn: Any = model.blocks[-1].attn
        if not hasattr(attn, "qkv"):
            raise ValueError(f"the last block's attention {type(attn).__name__} has no fused `qkv` Linear")
        self.model = model
        patch = model.patch_embed.patch_size
        if patch[0] != patch[1]:
            raise ValueError(f"non-square patches {patch} are not supported")
        self.patch_size = patch[0]
        self.feature_dim = model.embed_dim
        self.num_heads = attn.num_heads
        self.num_prefix_tokens = model.num_prefix_tokens
        self.layers = layers
        self.precision = precision
        self.preprocess = preprocess or _timm_preprocess(model)
        self.default_resize = ResizeRule(short_side=short_side, multiple_of=self.patch_size)
        self.freeze()

    def _blocks(self) -> nn.ModuleList:
        return self.model.blocks  # type: ignore[return-value]

    def _run(self, images: Tensor) -> Tensor:
        # timm's forward_features, with DINO's (non-antialiased) bicubic position resampling
        m = self.model
        x = m.norm_pre(m.patch_drop(self._pos_embed(m.patch_embed(images))))
        return m.norm(m.blocks(x))

    def _pos_embed(self, x: Tensor) -> Tensor:
        """``(B, h, w, D)`` patch embeddings -> ``(B, T, D)`` tokens with prefix tokens and positions.

        Like DINO/DINOv2 and transformers (not timm's antialiased resampling, which uses a different
        cubic kernel when upsampling), the grid of position embeddings is resized with plain bicubic.
        """
        m: Any = self.model
        B, h, w, D = x.shape
        prefix = [t.expand(B, -1, -1) for t in (m.cls_token, m.reg_token) if t is not None]
        pos: Tensor = m.pos_embed
        pos_prefix = 0 if m.no_embed_class else self.num_prefix_tokens
        old = m.patch_embed.grid_size
        if (h, w) != tuple(old):
            grid = rearrange(pos[:, pos_prefix:].float(), "1 (h w) d -> 1 d h w", h=old[0], w=old[1])
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
            pos = torch.cat([pos[:, :pos_prefix], rearrange(grid, "1 d h w -> 1 (h w) d").to(pos.dtype)], 1)
        x = x.reshape(B, h * w, D)
        if m.no_embed_class:
            return m.pos_drop(torch.cat([*prefix, x + pos], dim=1))
        return m.pos_drop(torch.cat([*prefix, x], dim=1) + pos)

    def _final_norm(self, tokens: Tensor) -> Tensor:
        return self.model.norm(tokens)

    def _attention_module(self) -> Any:
        return self.model.blocks[-1].attn

    def _qk(self, x: Tensor) -> tuple[Tensor, Tensor, float]:
        attn = self._attention_module()
        qkv = rearrange(attn.qkv(x), "b t (three n d) -> three b n t d", three=3, n=attn.num_heads)
        return attn.q_norm(qkv[0]), attn.k_norm(qkv[1]), float(attn.scale)


def _timm_preprocess(model: nn.Module) -> Preprocess:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if "mean" not in cfg or "std" not in cfg:
        raise ValueError(
            f"{type(model).__name__} has no mean/std in its pretrained_cfg; pass `preprocess` explicitly"
        )
    return Preprocess(mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                      interpolation=cfg.get("interpolation", "bicubic"))


class VisionTransformer(TimmViT):
    """A randomly initialised timm ViT, e.g. for tests: ImageNet normalisation, bicubic resizing.

    Args:
        patch_size: patch size in pixels.
        embed_dim: token dimension ``D``.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden size over ``embed_dim``.
        img_size: the size the positional embedding is defined for.
        seed: when set, the weights are drawn from this seed inside ``torch.random.fork_rng`` (identical
            weights for equal seeds, the global RNG untouched); from the global RNG when None.
        layers, precision: as in ``TimmViT``.
    """

    def __init__(self, patch_size: int = 8, embed_dim: int = 64, depth: int = 2, num_heads: int = 4,
                 mlp_ratio: float = 4.0, img_size: int = 224, seed: int | None = None,
                 layers: tuple[int, ...] = (), precision: str = "fp32") -> None:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = TimmVisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim,
                                          depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                          num_classes=0, dynamic_img_size=True)
        preprocess = Preprocess(mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, interpolation="bicubic")
        super().__init__(model, preprocess=preprocess, layers=layers, precision=precision)


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


class HFViT(_ViTBase):
    """A frozen Hugging Face ``ViTModel``/``Dinov2Model``/``Dinov2WithRegistersModel`` run with SDPA.

    Args:
        source: hub repo id or local directory (``config.json``, weights, ``preprocessor_config.json``).
        layers, precision, short_side: as in ``TimmViT``.

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
        _check_args(precision, layers, config.num_hidden_layers)
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
    import inspect

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

