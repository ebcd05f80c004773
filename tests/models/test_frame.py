"""The per-frame parts: tokens from features, drawn slots, decoding blended by alpha or attention."""

import pytest
import torch
from einops import rearrange

from dinosavi.models.decoders import AlphaDecoder, MLPDecoder
from dinosavi.models.frame import FrameModel
from dinosavi.models.pos_embed import PositionalEncoding


def _frame(D=24, slots=5, **kw):
    return FrameModel(D, 16, 32, slots, AlphaDecoder(16, D, 2, 1, 32, PositionalEncoding("linear")), **kw)


def test_tokens_of_a_frame():
    features = torch.randn(3, 24, 6, 7)
    assert _frame().embed(features).shape == (3, 42, 16)  # LayerNorm + MLP to slot_dim
    raw = _frame(input_mlp=False)
    torch.testing.assert_close(raw.embed(features), rearrange(features, "b d h w -> b (h w) d"))  # as they are
    with_pe = _frame(input_mlp=False, input_pe="linear")
    shifted = with_pe.embed(features) - rearrange(features, "b d h w -> b (h w) d")
    assert not torch.allclose(shifted[:, 0], shifted[:, -1])  # the position embedding differs by patch
    torch.testing.assert_close(shifted[0], shifted[1])  # and not by image


def test_same_generator_same_slots():
    frame = _frame()
    a = frame.init_slots(2, generator=torch.Generator().manual_seed(0))
    b = frame.init_slots(2, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 5, 16) and torch.equal(a, b)
    assert frame.init_slots(1, 3).shape == (1, 3, 16)  # another count than the model's


def test_blend_attention_decodes_with_the_attention():
    D = 24
    frame = FrameModel(D, 16, 32, 3, MLPDecoder(16, D, 2, 32, (6, 7)), blend="attention")
    slots, attention = torch.randn(1, 3, 16), torch.rand(1, 3, 6, 7).softmax(1)
    torch.testing.assert_close(frame.decode(slots, (6, 7), attention).alpha, attention)
    with pytest.raises(ValueError, match="blend=attention"):
        frame.decode(slots, (6, 7))
    with pytest.raises(ValueError, match=r"Unknown model\.blend `mean`"):
        FrameModel(D, 16, 32, 3, MLPDecoder(16, D, 2, 32, (6, 7)), blend="mean")
