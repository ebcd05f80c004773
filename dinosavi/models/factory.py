"""The slot model a :class:`~dinosavi.models.options.ModelConfig` describes: the one place that turns the
``model`` options into modules (the front door, the original's checkpoints and tests all build through it)."""

from __future__ import annotations

from torch import nn

from dinosavi.models.decoders import (
    DECODERS,
    AlphaDecoder,
    MixerDecoder,
    MLPDecoder,
    SlotDecoder,
    TransformerDecoder,
)
from dinosavi.models.options import ModelConfig
from dinosavi.models.pos_embed import OriginalPositionalEncoding, PositionalEncoding
from dinosavi.models.predictor import PREDICTORS, SaviPredictor, TimeDecoder
from dinosavi.models.slot_model import SlotModel

__all__ = ["build_model"]


def build_model(cfg: ModelConfig, feature_dim: int) -> SlotModel:
    """The slot model for features of ``feature_dim`` channels (DINOSAUR when ``predictor=none``)."""
    if cfg.decoder not in DECODERS:
        raise ValueError(f"Unknown model.decoder `{cfg.decoder}`; expected one of {DECODERS}")
    if cfg.predictor not in PREDICTORS:
        raise ValueError(f"Unknown model.predictor `{cfg.predictor}`; expected one of {PREDICTORS}")
    num_slots = cfg.num_slots if isinstance(cfg.num_slots, int) else tuple(int(n) for n in cfg.num_slots)
    pe_size = (int(cfg.pe_size[0]), int(cfg.pe_size[1]))
    decoder: SlotDecoder
    if cfg.decoder == "alpha":
        pe_class = OriginalPositionalEncoding if cfg.style == "original" else PositionalEncoding
        pos_embed = pe_class(cfg.pe_type, cfg.pe_dim, pe_size)
        decoder = AlphaDecoder(
            cfg.slot_dim, feature_dim, cfg.decoder_depth, cfg.decoder_kernel_size, cfg.decoder_hidden_dim, pos_embed
        )
    elif cfg.decoder == "mlp":
        decoder = MLPDecoder(cfg.slot_dim, feature_dim, cfg.decoder_depth, cfg.decoder_hidden_dim, pe_size)
    elif cfg.decoder == "mixer":
        decoder = MixerDecoder(cfg.slot_dim, feature_dim, cfg.decoder_depth, cfg.decoder_hidden_dim,
                               PositionalEncoding(cfg.pe_type, cfg.pe_dim, pe_size))
    else:
        decoder = TransformerDecoder(
            cfg.slot_dim, feature_dim, cfg.decoder_depth, cfg.decoder_hidden_dim, cfg.num_heads, pe_size
        )
    predictor: nn.Module | None = None
    if cfg.predictor == "savi":
        predictor = SaviPredictor(cfg.slot_dim, cfg.num_heads)
    elif cfg.predictor == "identity":
        predictor = nn.Identity()
    time_decoders = [TimeDecoder(cfg.time_decoder, cfg.slot_dim, cfg.num_heads) for _ in cfg.time_steps]
    return SlotModel(
        feature_dim, cfg.slot_dim, cfg.hidden_dim, num_slots, cfg.num_iters, decoder,
        ini_iters=cfg.ini_iters, predictor=predictor, time_steps=[int(k) for k in cfg.time_steps],
        time_decoders=time_decoders, bgfg_strategy=cfg.bgfg_strategy if cfg.bgfg else None, input_pe=cfg.input_pe,
        blend=cfg.blend, input_mlp=cfg.input_mlp, style=cfg.style, loss_norm=cfg.loss_norm,
        condition=cfg.condition, condition_share=cfg.condition_share, contrast_weight=cfg.contrast_weight,
        contrast_temperature=cfg.contrast_temperature, track_weight=cfg.track_weight,
        anchor=cfg.anchor,
    )
