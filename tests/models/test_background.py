"""Background from CLS attention (FOUND's head weighting) and the bg/fg slot masks."""

import pytest
import torch

from dinosavi.models.background import background_mask, bgfg_slot_masks


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
