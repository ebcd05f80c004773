import pytest
import torch

from dinosavi.models.decoders import AlphaDecoder
from dinosavi.models.pos_embed import PositionalEncoding


@pytest.mark.parametrize("pe_type", ["linear", "sine", "learnt"])
@pytest.mark.parametrize("kernel_size", [1, 3])
@pytest.mark.parametrize("size", [(7, 7), (5, 9)])
def test_alpha_decoder_shapes(pe_type, kernel_size, size):
    dec = AlphaDecoder(16, 24, 3, kernel_size, 32, PositionalEncoding(pe_type, 8, (7, 7)))
    out = dec(torch.randn(2, 4, 16), size)
    assert out.reconstruction.shape == (2, 24, *size)
    assert out.alpha.shape == (2, 4, *size)
    torch.testing.assert_close(out.alpha.sum(1), torch.ones(2, *size))


def test_pointwise_path_equals_convolutions():
    dec = AlphaDecoder(16, 24, 3, 1, 32, PositionalEncoding("sine", 8, (7, 7)))
    slots = torch.randn(2, 4, 16)
    fast = dec(slots, (6, 7))
    dec.pointwise_fast_path = False  # same weights, generic broadcast + convolution path
    slow = dec(slots, (6, 7))
    torch.testing.assert_close(fast.reconstruction, slow.reconstruction, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.alpha, slow.alpha, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("size", [(7, 7), (5, 9)])
def test_mlp_and_transformer_decoder_shapes(size):
    from dinosavi.models.decoders import MLPDecoder, TransformerDecoder

    for dec in (MLPDecoder(16, 24, 3, 32, (7, 7)), TransformerDecoder(16, 24, 2, 32, 4, (7, 7))):
        out = dec(torch.randn(2, 4, 16), size)
        assert out.reconstruction.shape == (2, 24, *size)
        assert out.alpha.shape == (2, 4, *size)
        torch.testing.assert_close(out.alpha.sum(1), torch.ones(2, *size))


def test_mlp_decoder_equals_broadcast_mlp():
    from dinosavi.models.decoders import MLPDecoder

    dec = MLPDecoder(16, 24, 3, 32, (6, 7))
    slots = torch.randn(2, 4, 16)
    x = slots[:, :, None, :] + dec.pos_embed(6, 7).flatten(1).T  # (B, S, N, C): the broadcast, built
    for i, layer in enumerate(dec.layers):
        x = layer(torch.relu(x) if i else x)
    alpha = x[..., -1].softmax(1)
    expected = torch.einsum("bsn,bsnd->bdn", alpha, x[..., :-1]).unflatten(-1, (6, 7))
    out = dec(slots, (6, 7))
    torch.testing.assert_close(out.reconstruction, expected, atol=1e-5, rtol=1e-5)


def test_mixer_decoder_equals_mlp_on_mixed_slots():
    from dinosavi.models.decoders import MixerDecoder

    pe = PositionalEncoding("linear", 4, (6, 7))
    dec = MixerDecoder(16, 24, 3, 32, pe)
    slots = torch.randn(2, 4, 16)
    weights = torch.randn(2, 4, 6, 7).softmax(1)
    mixed = torch.einsum("bshw,bsc->bhwc", weights, slots)
    x = torch.cat([mixed, pe(6, 7).permute(1, 2, 0).expand(2, -1, -1, -1)], -1)  # (B, h, w, C + P), built
    for i, layer in enumerate(dec.layers):
        x = layer(torch.relu(x) if i else x)
    out = dec(slots, (6, 7), weights)
    torch.testing.assert_close(out.reconstruction, x.permute(0, 3, 1, 2), atol=1e-5, rtol=1e-5)
    assert out.alpha is weights
    with pytest.raises(ValueError, match=r"model\.blend=attention"):
        dec(slots, (6, 7))


def test_mixer_decoder_needs_attention_blend():
    from dinosavi.models.factory import build_model
    from dinosavi.models.options import ModelConfig

    with pytest.raises(ValueError, match=r"needs model\.blend=attention"):
        build_model(ModelConfig(decoder="mixer", blend="alpha"), 32)
    model = build_model(ModelConfig(decoder="mixer", blend="attention", num_slots=3, slot_dim=16, hidden_dim=32,
                                    decoder_hidden_dim=32), 32)
    assert model.frame.decoder.needs_weights
