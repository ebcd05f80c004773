"""Slot tracking: exact permutations are undone, identities accumulate, bad options are refused."""

from __future__ import annotations

import pytest
import torch

from dinosavi.evaluation.tracking import SlotTracker, soft_iou


def test_soft_iou_is_the_iou_of_binary_masks():
    a = torch.zeros(2, 4, 4)
    a[0, :2], a[1, 2:] = 1, 1
    b = torch.zeros(1, 4, 4)
    b[0, :3] = 1
    assert soft_iou(a, b).flatten().tolist() == pytest.approx([8 / 12, 4 / 16])
    assert soft_iou(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)).item() == 0.0
    diffuse = torch.full((1, 4, 4), 0.1)
    assert soft_iou(diffuse, diffuse).item() < 0.1  # faint everywhere is not an overlap


def _frames(T: int, S: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Slowly drifting slots ``(T, S, C)`` and band masks ``(T, S, 2S, T + 5)`` moving one pixel per frame."""
    g = torch.Generator().manual_seed(seed)
    slots = torch.randn(S, 16, generator=g)
    drift = [slots + 0.1 * t * torch.randn(S, 16, generator=g) for t in range(T)]
    masks = torch.zeros(T, S, 2 * S, T + 5)
    for t in range(T):
        for s in range(S):
            masks[t, s, 2 * s : 2 * s + 2, t : t + 5] = 1.0
    return torch.stack(drift), masks


@pytest.mark.parametrize("mode", ["slotsim", "overlap"])
def test_tracker_undoes_a_shuffle_every_frame(mode):
    slots, masks = _frames(8)
    tracker = SlotTracker(mode, temperature=0.1)
    g = torch.Generator().manual_seed(1)
    for t in range(len(slots)):
        perm = torch.randperm(5, generator=g) if t else torch.arange(5)
        order = tracker.assign(slots[t, perm], masks[t, perm])
        assert torch.equal(perm[order], torch.arange(5)), (t, perm, order)


def test_tracks_accumulate_over_time():
    tracker = SlotTracker("slotsim", temperature=1.0)
    slots, masks = _frames(3)
    tracker.assign(slots[0], masks[0])
    tracker.assign(slots[1], masks[1])
    assert tracker.tracks is not None
    assert torch.allclose(tracker.tracks.sum(1), torch.ones(5, dtype=torch.float64))  # rows stay distributions
    assert not torch.equal(tracker.tracks, torch.eye(5, dtype=torch.float64))


def test_bad_options():
    with pytest.raises(ValueError, match="track_mode `iou`"):
        SlotTracker("iou")
    with pytest.raises(ValueError, match="track_temperature must be > 0"):
        SlotTracker("overlap", 0.0)
    tracker = SlotTracker("slotsim")
    tracker.assign(torch.randn(3, 4), torch.rand(3, 2, 2))
    with pytest.raises(ValueError, match="tracking 3 slots, got 4"):
        tracker.assign(torch.randn(4, 4), torch.rand(4, 2, 2))
