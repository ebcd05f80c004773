"""Label overlays (blend inside objects, 1-pixel contours) and the slot-mask grid, by hand."""

import numpy as np
import pytest
import torch

from dinosavi.viz.overlay import mask_grid, overlay, stretch_maps


def _palette() -> np.ndarray:
    palette = np.zeros((256, 3), np.uint8)
    palette[1] = (200, 0, 50)
    palette[2] = (0, 100, 0)
    return palette


def test_overlay_hand_computed():
    frame = np.full((2, 3, 3), 100, np.uint8)
    labels = np.array([[0, 1, 1], [0, 0, 1]])
    out = overlay(frame, labels, _palette(), opacity=0.5)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    # inside object 1: 0.5 * 100 + 0.5 * (200, 0, 50). Contours: the pixel left of or above an id change
    # takes 0.6 x its own id's colour: (0, 0) and (1, 1) are left of object 1 (background colour 0),
    # (0, 1) sits above background.
    expected = np.array(
        [
            [[0, 0, 0], [120, 0, 30], [150, 50, 75]],
            [[100, 100, 100], [0, 0, 0], [150, 50, 75]],
        ],
        np.uint8,
    )
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("opacity", [0.0, 0.3, 1.0])
def test_overlay_opacity_and_background(opacity):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    labels = np.zeros((6, 8), np.int64)
    labels[2:5, 3:7] = 2
    out = overlay(frame, labels, _palette(), opacity=opacity)
    interior = (slice(2, 4), slice(3, 6))  # object pixels whose E and S neighbours are the object
    blended = (1 - opacity) * frame[interior].astype(np.float32) + opacity * np.array([0, 100, 0], np.float32)
    assert np.array_equal(out[interior], blended.round().astype(np.uint8))
    assert np.array_equal(out[:1], frame[:1]) and np.array_equal(out[:, :2], frame[:, :2])  # far from the object


def test_overlay_ids_wrap_around_the_palette():
    frame = np.zeros((1, 2, 3), np.uint8)
    a = overlay(frame, np.array([[1, 1]]), _palette())
    b = overlay(frame, np.array([[257, 257]]), _palette())
    assert np.array_equal(a, b) and a.any()


def test_overlay_size_mismatch_raises():
    with pytest.raises(ValueError, match=r"frame \(2, 3\) and labels \(3, 2\) differ"):
        overlay(np.zeros((2, 3, 3), np.uint8), np.zeros((3, 2), np.int64), _palette())


def test_mask_grid_tiles_the_frame_and_each_masked_copy():
    frame = torch.randint(0, 256, (3, 8, 10), dtype=torch.uint8)
    masks = torch.stack([torch.ones(4, 5), torch.zeros(4, 5), torch.full((4, 5), 0.5)])
    grid = mask_grid(frame, masks)
    assert grid.shape == (3, 8, 40) and grid.dtype == torch.uint8
    assert torch.equal(grid[..., :10], frame) and torch.equal(grid[..., 10:20], frame)
    assert not grid[..., 20:30].any()
    assert torch.equal(grid[..., 30:], (frame.float() * 0.5).round().to(torch.uint8))


def test_mask_grid_upsamples_the_masks():
    frame = torch.full((3, 4, 4), 200, dtype=torch.uint8)
    masks = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # top-left patch of a 2x2 grid
    tile = mask_grid(frame, masks)[0, :, 4:].float()
    assert tile[0, 0] == 200 and tile[3, 3] == 0  # bilinear, corners keep the patch values
    assert tile[:2, :2].mean() > tile[2:, 2:].mean()


def test_stretch_maps_spans_each_maps_own_range():
    masks = torch.stack([torch.tensor([[0.15, 0.18], [0.16, 0.17]]), torch.zeros(2, 2), torch.full((2, 2), 0.4)])
    out = stretch_maps(masks)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 1.0], [1 / 3, 2 / 3]]))
    assert torch.equal(out[1], masks[1]) and torch.equal(out[2], masks[2])  # flat maps are kept
