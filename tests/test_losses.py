"""Training objectives: layer-normalised targets, the per-frame and the temporal reconstruction losses."""

from __future__ import annotations

import torch

from dinosavi.losses import feature_reconstruction_loss, normalize_target


def test_target_is_layer_normalised():
    x = torch.randn(2, 24, 3, 3) * 5 + 2
    t = normalize_target(x)
    torch.testing.assert_close(t.mean(1), torch.zeros(2, 3, 3), atol=1e-5, rtol=0)
    assert feature_reconstruction_loss(t, x).item() < 1e-10
