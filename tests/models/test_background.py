"""Background from CLS attention (FOUND's head weighting) and the bg/fg slot masks."""

import pytest
import torch

from dinosavi.models.background import BGFG_STRATEGIES, background_mask, bgfg_slot_masks


def test_background_mask_hand_made():
    # 2 heads on a 2x3 grid. Head 0 is focused (one hot patch), head 1 diffuse.
    attn = torch.zeros(1, 2, 2, 3)
    attn[0, 0, 0, 0] = 0.9
    attn[0, 0].view(-1)[1:] = 0.02
    attn[0, 1] = torch.tensor([[0.2, 0.2, 0.2], [0.2, 0.1, 0.1]])
    # mean over heads and patches = 2/12 = 0.1667: head 0 counts 1 patch, head 1 counts 4
    # weights log(5/1) = 1.609 and log(5/4) = 0.223
    w0, w1 = torch.log(torch.tensor(5.0)), torch.log(torch.tensor(5 / 4))
    fused = (attn[0, 0] * w0 + attn[0, 1] * w1) / 2
    expected = fused < fused.mean()
    got = background_mask(attn)
    assert got.shape == (1, 2, 3) and got.dtype == torch.bool
    assert torch.equal(got[0], expected)
    assert not got[0, 0, 0] and got[0, 1, 2]  # the focused patch is foreground, a cold one background


def test_bgfg_slot_masks_strategies():
    background = torch.zeros(1, 3, 2, 2, dtype=torch.bool)
    background[..., 0, :] = True  # top row background
    always = bgfg_slot_masks(background, 2, 3, "always")
    assert always.shape == (1, 3, 5, 4)
    assert torch.equal(always[0, :, :2], background.flatten(-2)[0, :, None].expand(3, 2, 4))
    assert torch.equal(always[0, :, 2:], ~background.flatten(-2)[0, :, None].expand(3, 3, 4))
    initial = bgfg_slot_masks(background, 2, 3, "initial")
    assert torch.equal(initial[:, 0], always[:, 0]) and initial[:, 1:].all()
    with pytest.raises(ValueError, match="Unknown bgfg strategy `sometimes`"):
        bgfg_slot_masks(background, 2, 3, "sometimes")


@pytest.mark.parametrize(("batch", "heads", "h", "w"), [(1, 1, 1, 2), (3, 6, 4, 7), (2, 12, 9, 5)])
def test_background_mask_shapes(batch, heads, h, w):
    got = background_mask(torch.rand(batch, heads, h, w))
    assert got.shape == (batch, h, w) and got.dtype == torch.bool


def test_background_mask_is_per_image_and_ignores_scale():
    attn = torch.rand(4, 6, 5, 7)
    whole = background_mask(attn)
    for b in range(4):
        assert torch.equal(whole[b], background_mask(attn[b : b + 1])[0])
    # a common positive scale changes neither the counts above the mean nor the comparison with it
    assert torch.equal(background_mask(attn * 3.0), whole)
    assert torch.equal(background_mask(attn.half()), background_mask(attn.half().float()))


def test_a_uniform_map_has_no_background():
    assert not background_mask(torch.full((1, 3, 4, 4), 0.25)).any()


@pytest.mark.parametrize("strategy", BGFG_STRATEGIES)
@pytest.mark.parametrize(("num_bg", "num_fg"), [(1, 1), (2, 5), (0, 3)])
def test_bgfg_slot_masks_shapes(strategy, num_bg, num_fg):
    background = torch.rand(2, 4, 3, 5) < 0.5
    masks = bgfg_slot_masks(background, num_bg, num_fg, strategy)
    assert masks.shape == (2, 4, num_bg + num_fg, 15) and masks.dtype == torch.bool
    assert torch.equal(masks[:, 0, :num_bg], background[:, 0].flatten(1)[:, None].expand(-1, num_bg, -1))
