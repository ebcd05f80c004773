"""Frozen timm Vision Transformers: any timm ViT, a small random ViT (:class:`TinyRandomViT`), and the
base shared with :mod:`dinosavi.encoders.hf` (Hugging Face ViT/DINOv2).

Every block runs ``F.scaled_dot_product_attention``; the last layer's CLS attention is recomputed
from that block's query/key projections of its (captured) input, so no block has to materialise its
attention matrix (:class:`ViTBase`). Positional embeddings are resampled (plain bicubic, as in DINO) to
the input's patch grid. Weights are loaded by :mod:`dinosavi.encoders.weights`.

Shapes: ``B`` batch, ``D`` channels, ``N = h*w`` patches, ``T`` tokens (prefix + patches),
``H, W`` pixels.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from dinosavi.encoders.base import EncoderOutput, FrozenEncoder, Preprocess, ResizeRule
from dinosavi.precision import check_precision, precision_dtype

__all__ = [
    "TimmViT",
    "TinyRandomViT",
    "ViTBase",
    "check_vit_args",
    "cls_attention",
]



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
    return torch.autocast(device_type="cuda", dtype=precision_dtype(precision))


def check_vit_args(precision: str, layers: tuple[int, ...], depth: int) -> None:
    """Check a ViT wrapper's ``precision`` and ``layers`` against a model of ``depth`` blocks.

    Raises:
        ValueError: an unknown precision, or a layer index outside ``[-depth, depth)``.
    """
    check_precision(precision)
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


class ViTBase(FrozenEncoder):
    """Shared token -> feature-map logic of the ViT wrappers (timm here, Hugging Face in ``hf.py``).

    Subclasses set ``num_prefix_tokens``, ``layers`` and ``precision`` and provide the model hooks
    ``_blocks``, ``_run``, ``_final_norm``, ``_attention_module`` and ``_qk``.
    """

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


class TimmViT(ViTBase):
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
        check_vit_args(precision, layers, len(model.blocks))
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


class TinyRandomViT(TimmViT):
    """A small timm ViT with random weights, for tests and offline runs (the encoder ``vit_tiny_random``).

    ImageNet normalisation, bicubic resizing, nothing to download; its features mean nothing, it exercises
    the ViT code paths.

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
