"""2-D positional encodings: any grid size, hand-computed coordinates and sinusoids, the learnt table resized, the
original DINOSAVi layout, and the errors that name the bad option."""

import pytest
import torch
import torch.nn.functional as F

from dinosavi.models.decoders import AlphaDecoder
from dinosavi.models.pos_embed import OriginalPositionalEncoding, PositionalEncoding, grid


@pytest.mark.parametrize("pe_type", ["linear", "sine", "learnt"])
def test_positional_encoding_any_size(pe_type):
    pe = PositionalEncoding(pe_type, 8, (8, 8))
    assert pe(8, 8).shape == (pe.dim, 8, 8)
    assert pe(5, 13).shape == (pe.dim, 5, 13)
    # base size and twice the base size agree at the shared positions up to interpolation
    a, b = pe(8, 8), pe(16, 16)
    torch.testing.assert_close(a, torch.nn.functional.avg_pool2d(b[None], 2)[0], atol=0.05, rtol=0.0)


def test_positional_encoding_errors():
    with pytest.raises(ValueError, match="Unknown positional encoding `spiral`"):
        PositionalEncoding("spiral")
    with pytest.raises(ValueError, match="divisible by 4"):
        PositionalEncoding("sine", 6)


def test_original_positional_encodings():
    from dinosavi.models.pos_embed import OriginalPositionalEncoding

    linear = OriginalPositionalEncoding("linear")
    grid = linear(3, 5)  # corners at -1 and 1, regenerated for any grid, no state
    assert grid.shape == (2, 3, 5) and not list(linear.state_dict())
    assert grid[0, :, 0].tolist() == [-1.0, 0.0, 1.0] and grid[1, 0].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    sine = OriginalPositionalEncoding("sine", 4, (6, 7))
    assert sine(6, 7).shape == (4, 6, 7) and list(sine.state_dict()) == ["pe"]
    torch.testing.assert_close(sine(6, 7)[0, 0], torch.arange(7.0).sin())  # sin of the column index
    torch.testing.assert_close(sine(6, 7)[3, :, 0], torch.arange(6.0).cos())  # cos of the row index
    learnt = OriginalPositionalEncoding("learnt", 4, (6, 7))
    assert learnt.pe.shape == (4, 6, 7) and learnt(6, 7) is learnt.pe
    resized = learnt(12, 14)
    expected = torch.nn.functional.interpolate(learnt.pe[None], size=(12, 14), mode="bicubic")[0]
    torch.testing.assert_close(resized, expected)
    dec = AlphaDecoder(16, 24, 2, 1, 32, learnt)
    assert dec(torch.randn(2, 3, 16), (5, 9)).reconstruction.shape == (2, 24, 5, 9)


def test_grid_is_pixel_centres_in_minus_one_to_one():
    y, x = grid(2, 4, torch.device("cpu"))
    assert y.shape == x.shape == (2, 4)
    assert y[:, 0].tolist() == [-0.5, 0.5] and x[0].tolist() == [-0.75, -0.25, 0.25, 0.75]
    assert (y[:, 1:] == y[:, :1]).all() and (x[1:] == x[:1]).all()


def test_linear_encoding_is_the_grid_with_two_channels():
    pe = PositionalEncoding("linear", dim=8)
    assert pe.dim == 2 and not list(pe.state_dict())
    torch.testing.assert_close(pe(3, 5), torch.stack(grid(3, 5, torch.device("cpu"))), rtol=0, atol=0)


def test_sine_encoding_hand_computed():
    """dim 8: two frequencies, 1 and 10000^(-1/2); at the base grid the phase of row i is i + 0.5."""
    pe = PositionalEncoding("sine", 8, (4, 6))(4, 6)
    rows, cols = torch.arange(4.0) + 0.5, torch.arange(6.0) + 0.5
    assert pe.shape == (8, 4, 6)
    expected = {0: rows.sin(), 1: (rows / 100).sin(), 2: rows.cos(), 3: (rows / 100).cos()}
    for channel, values in expected.items():
        torch.testing.assert_close(pe[channel, :, 0], values)
        torch.testing.assert_close(pe[channel], pe[channel, :, :1].expand(4, 6))  # constant along columns
    torch.testing.assert_close(pe[4, 0], cols.sin())
    torch.testing.assert_close(pe[7, 0], (cols / 100).cos())


def test_learnt_encoding_is_the_parameter_resized_bilinearly():
    pe = PositionalEncoding("learnt", 4, (6, 7))
    assert pe.weight.shape == (1, 4, 6, 7) and pe.weight.requires_grad
    base = pe(6, 7)
    assert base.shape == (4, 6, 7) and base.data_ptr() == pe.weight.data_ptr()
    expected = F.interpolate(pe.weight, size=(9, 5), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(pe(9, 5), expected)
    pe(9, 5).sum().backward()
    assert pe.weight.grad is not None and pe.weight.grad.abs().sum() > 0


def test_original_positional_encoding_errors():
    with pytest.raises(ValueError, match=r"Unknown positional encoding `spiral`; expected one of \('linear'"):
        OriginalPositionalEncoding("spiral")
    with pytest.raises(ValueError, match="divisible by 4, got 6"):
        OriginalPositionalEncoding("sine", 6)


def test_original_sine_table_hand_computed():
    """dim 8: channels 0-3 are sin/cos of the column index at frequencies 1 and 1/100, channels 4-7 of the row."""
    table = OriginalPositionalEncoding("sine", 8, (3, 5)).pe
    cols, rows = torch.arange(5.0), torch.arange(3.0)
    torch.testing.assert_close(table[1, 0], cols.cos())
    torch.testing.assert_close(table[2, 2], (cols / 100).sin())
    torch.testing.assert_close(table[5, :, 4], rows.cos())
    torch.testing.assert_close(table[7, :, 0], (rows / 100).cos())
