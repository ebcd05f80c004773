import torch

from dinosavi.models.decoders import AlphaDecoder
from dinosavi.models.dinosaur import Dinosaur
from dinosavi.models.pos_embed import PositionalEncoding
from dinosavi.models.slot_model import SlotModel


def _model(D=24, slots=5):
    dec = AlphaDecoder(16, D, 2, 1, 32, PositionalEncoding("linear"))
    return Dinosaur(D, 16, 32, slots, 2, dec)


def test_frame_output_shapes():
    out = _model()(torch.randn(3, 24, 6, 7))
    assert out.slots.shape == (3, 5, 16)
    assert out.attention.shape == out.alpha.shape == (3, 5, 6, 7)
    assert out.reconstruction.shape == (3, 24, 6, 7)


def test_same_generator_same_masks():
    model = _model().eval()
    x = torch.randn(1, 24, 6, 7)
    a = model(x, generator=torch.Generator().manual_seed(0))
    b = model(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.alpha, b.alpha) and torch.equal(a.attention, b.attention)


def test_clip_loss_decreases_with_training():
    torch.manual_seed(0)
    model = SlotModel(24, 16, 32, 5, 2, AlphaDecoder(16, 24, 2, 1, 32, PositionalEncoding("linear")))
    # three "objects": constant feature vectors on fixed regions
    regions = torch.zeros(6, 7, dtype=torch.long)
    regions[:3, :4], regions[3:, 4:] = 1, 2
    feats = torch.randn(3, 24)[regions].permute(2, 0, 1).expand(2, 2, 24, 6, 7).contiguous()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = model.clip_loss(feats)
        first = first if first is not None else out.loss.item()
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.alpha.shape == (2, 2, 5, 6, 7)
    assert out.loss.item() < 0.5 * first
