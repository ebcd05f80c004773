"""What carries slots through time: SAVi's predictor and the time decoders, their shapes, their formulas
recomputed from their layers, and the errors that name the bad option."""

import pytest
import torch

from dinosavi.models.predictor import TIME_DECODERS, SaviPredictor, TimeDecoder


@pytest.mark.parametrize("kind", TIME_DECODERS)
def test_time_decoder_and_predictor_shapes(kind):
    slots = torch.randn(3, 5, 16)
    assert TimeDecoder(kind, 16)(slots).shape == (3, 5, 16)
    assert SaviPredictor(16)(slots).shape == (3, 5, 16)
    with pytest.raises(ValueError, match="Unknown time decoder `conv`"):
        TimeDecoder("conv", 16)


def test_savi_predictor_is_attention_then_mlp_with_post_norms():
    predictor = SaviPredictor(16, num_heads=4)
    slots = torch.randn(2, 5, 16)
    attended = predictor.norm_attn(slots + predictor.attn(slots, slots, slots)[0])
    expected = predictor.norm_mlp(attended + torch.relu(predictor.mlp(attended)))
    torch.testing.assert_close(predictor(slots), expected)
    assert not torch.allclose(predictor(slots), slots)


def test_savi_predictor_is_equivariant_to_slot_order():
    predictor = SaviPredictor(16)
    slots, order = torch.randn(2, 5, 16), torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(predictor(slots[:, order]), predictor(slots)[:, order])


def test_time_decoders_recomputed_from_their_layers():
    slots = torch.randn(2, 4, 8)
    assert TimeDecoder("identity", 8)(slots) is slots
    linear = TimeDecoder("linear", 8)
    torch.testing.assert_close(linear(slots), slots @ linear.layer.weight.T + linear.layer.bias)
    attn = TimeDecoder("attn", 8, num_heads=2)
    torch.testing.assert_close(attn(slots), attn.layer(slots, slots, slots)[0])  # no residual


def test_heads_must_divide_slot_dim():
    with pytest.raises(ValueError, match=r"predictor heads \(3\) must divide slot_dim \(16\)"):
        SaviPredictor(16, num_heads=3)
    with pytest.raises(ValueError, match=r"time decoder heads \(5\) must divide slot_dim \(16\)"):
        TimeDecoder("attn", 16, num_heads=5)
    TimeDecoder("linear", 16, num_heads=5)  # heads matter only for attn


def test_unknown_time_decoder_lists_the_choices():
    with pytest.raises(ValueError, match=r"expected one of \('linear', 'attn', 'identity'\)"):
        TimeDecoder("lstm", 16)
