"""The slot model's options: the ``model`` section of the config schema, read by
:func:`dinosavi.models.factory.build_model`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelConfig"]


@dataclass
class ModelConfig:
    """The slot model: per-frame slot attention and decoder, in a loop over time.

    ``num_slots`` is an int, or ``[bg, fg]`` with ``bgfg`` (background/foreground slot groups).
    ``ini_iters`` None uses ``num_iters`` on freshly sampled slots. ``predictor``: ``savi`` carries
    slots to the next frame (self-attention + MLP), ``identity`` carries them unchanged, ``none`` samples
    fresh slots every frame (DINOSAUR, ``ini_iters`` iterations on every frame). ``input_pe``: ``linear``
    adds a soft position embedding of the patch coordinates to the features before the input MLP
    (slot attention on CNN features needs it), ``none`` adds nothing (ViT features carry position).
    ``blend``: ``alpha`` blends the decoded slots with the decoder's alpha masks (DINOSAUR), ``attention``
    with the slot-attention weights (they are then the masks; the reconstruction error reaches the
    grouping directly; future time steps keep their alpha).
    ``input_mlp``: true maps the features through a LayerNorm + MLP to ``slot_dim`` tokens before slot
    attention (DINOSAUR, ours); false feeds the raw features to slot attention (the original DINOSAVi).
    ``loss_norm``: ``target`` compares the prediction with layer-normalised features (ours); ``prediction``
    puts a learnable LayerNorm on the prediction and compares it with the raw features (the original).
    ``style``: ``original`` reproduces the original code's numerics that are no research choice: decoder
    PE values, initialisation and bicubic resizing, slot-initialisation draws, slot attention's weighted
    mean; ``dinosavi`` is ours. The presets named after the original set all three to the original's.
    ``time_steps``: the frame offsets the slots of a frame are decoded to, one ``time_decoder``
    (``linear``, ``attn`` or ``identity``) each. ``decoder``: ``alpha`` (spatial broadcast + convolutions
    of ``decoder_kernel_size``), ``mlp`` (DINOSAUR's MLP with a learned PE), ``transformer`` (learned
    patch queries cross-attending to slots) or ``mixer`` (slots mixed per position by the slot attention,
    then one shared per-position MLP; needs ``blend=attention``); ``pe_*`` apply to ``alpha``, ``pe_size``
    also to the learned embeddings of ``mlp``/``transformer``. ``bgfg_strategy``: ``initial`` restricts bg/fg
    slots to the patches of their group (from CLS attention) at the first frame, ``always`` at every frame.
    ``condition``: ``none``, or a mask-conditioned slot initialiser for lock-on, trained without labels on
    ``condition_share`` of the clips from first-frame ``kmeans`` regions of the frozen features or the model's
    own ``attention`` regions (:mod:`dinosavi.models.conditioning`); ``track_weight`` > 0 also trains their
    slot attention at later frames toward those regions carried by label propagation on the frozen features.
    ``contrast_weight`` > 0 adds SlotContrast's slot-slot contrastive loss with ``contrast_temperature``.
    """

    num_slots: Any = 10
    slot_dim: int = 256
    hidden_dim: int = 1024
    num_iters: int = 3
    ini_iters: int | None = None
    predictor: str = "none"
    input_pe: str = "none"
    blend: str = "alpha"
    input_mlp: bool = True
    loss_norm: str = "target"
    style: str = "dinosavi"
    num_heads: int = 4
    time_steps: list[int] = field(default_factory=lambda: [0])
    time_decoder: str = "identity"
    decoder: str = "alpha"
    decoder_depth: int = 4
    decoder_kernel_size: int = 1
    decoder_hidden_dim: int = 1024
    pe_type: str = "linear"
    pe_dim: int = 4
    pe_size: list[int] = field(default_factory=lambda: [28, 28])
    bgfg: bool = False
    bgfg_strategy: str = "always"
    condition: str = "none"
    condition_share: float = 0.5
    contrast_weight: float = 0.0
    contrast_temperature: float = 0.1
    track_weight: float = 0.0
    anchor: float = 0.0
