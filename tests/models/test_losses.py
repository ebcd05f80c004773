"""Training objectives: layer-normalised targets and the temporal reconstruction loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dinosavi.models.losses import normalize_target, temporal_reconstruction_loss


def test_target_is_layer_normalised():
    x = torch.randn(2, 24, 3, 3) * 5 + 2
    t = normalize_target(x)
    torch.testing.assert_close(t.mean(1), torch.zeros(2, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(t.var(1, unbiased=False), torch.ones(2, 3, 3), atol=1e-4, rtol=0)


def test_normalize_target_hand_computed():
    # channels [1, 3] at one patch: mean 2, variance 1 -> [-1, 1] (up to LayerNorm's eps of 1e-5)
    x = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1)
    torch.testing.assert_close(normalize_target(x).flatten(), torch.tensor([-1.0, 1.0]), atol=1e-5, rtol=0)
    assert normalize_target(torch.randn(3, 5, 4, 6)).shape == (3, 5, 4, 6)


def test_temporal_loss_hand_computed():
    """Without normalisation: step k compares prediction[p, :, t] with frame t + k."""
    features = torch.arange(5.0).view(1, 5, 1, 1, 1)  # frame t holds the value t
    prediction = torch.zeros(2, 1, 2, 1, 1, 1)  # P = 2 steps, T' = 2 frames
    loss, logs = temporal_reconstruction_loss(prediction, features, (0, 2), normalized=False)
    # step 0: frames 0, 1 -> (0 + 1) / 2; step 2: frames 2, 3 -> (4 + 9) / 2
    assert set(logs) == {"loss/t+0", "loss/t+2"}
    assert logs["loss/t+0"].item() == 0.5 and logs["loss/t+2"].item() == 6.5
    assert loss.item() == 3.5


def test_temporal_loss_normalises_each_frame_over_channels():
    features = torch.randn(2, 4, 6, 3, 5) * 3 + 1
    prediction = torch.randn(2, 2, 3, 6, 3, 5, requires_grad=True)
    loss, logs = temporal_reconstruction_loss(prediction, features, (0, 1))
    target = normalize_target(features.flatten(0, 1)).unflatten(0, (2, 4))
    expected = [F.mse_loss(prediction[0], target[:, 0:3]), F.mse_loss(prediction[1], target[:, 1:4])]
    torch.testing.assert_close(logs["loss/t+0"], expected[0].detach())
    torch.testing.assert_close(logs["loss/t+1"], expected[1].detach())
    torch.testing.assert_close(loss, (expected[0] + expected[1]) / 2)
    assert loss.requires_grad and not any(v.requires_grad for v in logs.values())


def test_temporal_loss_is_fp32_for_low_precision_predictions():
    features = torch.randn(1, 3, 4, 2, 2)
    prediction = torch.randn(1, 1, 3, 4, 2, 2)
    loss, _ = temporal_reconstruction_loss(prediction.bfloat16(), features.half(), (0,))
    assert loss.dtype == torch.float32
    reference, _ = temporal_reconstruction_loss(prediction.bfloat16().float(), features.half().float(), (0,))
    torch.testing.assert_close(loss, reference)


def test_slot_contrast_loss_hand_computed():
    # two orthogonal slots that keep their direction from frame to frame: each picks itself with logit 1/tau
    # against 0, so the loss is log(1 + e^(-1/tau)); swapped slots pick the wrong one: log(1 + e^(1/tau))
    from dinosavi.models.losses import slot_contrast_loss

    still = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).expand(1, 2, 2, 2)  # (B, T, S, C)
    tau = 0.5
    expected = torch.log1p(torch.exp(torch.tensor(-1 / tau)))
    torch.testing.assert_close(slot_contrast_loss(still * 3, tau), expected)  # scale does not matter
    swapped = torch.stack([still[:, 0], still[:, 0].flip(1)], dim=1)
    torch.testing.assert_close(slot_contrast_loss(swapped, tau), torch.log1p(torch.exp(torch.tensor(1 / tau))))
    # the other clip's slots are negatives too: a second clip with the same slots adds two equal rivals
    batch = torch.cat([still, still])
    torch.testing.assert_close(slot_contrast_loss(batch, tau), torch.log(1 + 1 + 2 * torch.exp(torch.tensor(-1 / tau))))
    with pytest.raises(ValueError, match="T >= 2"):
        slot_contrast_loss(still[:, :1], tau)


def test_region_tracking_loss_is_the_cross_entropy_to_the_regions():
    from dinosavi.models.losses import region_tracking_loss

    attention = torch.tensor([[0.8, 0.3], [0.2, 0.7]])[None, None]  # (B, T, S, N): patch 0 -> slot 0, 1 -> 1
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])[None, None]
    expected = -(torch.log(torch.tensor(0.8)) + torch.log(torch.tensor(0.7))) / 2
    torch.testing.assert_close(region_tracking_loss(attention, targets), expected)
    assert region_tracking_loss(attention, targets.flip(2)) > expected
