"""The files of an evaluation run: palette PNGs, overlays and slot maps, written on a thread pool."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from dinosavi.data.davis import VideoSequence, davis_palette, read_palette_png
from dinosavi.viz.outputs import write_sequence, write_slot_maps


def _sequence() -> VideoSequence:
    frames = torch.zeros(3, 3, 16, 20, dtype=torch.uint8)
    frames[:, 0] = 200  # red frames
    return VideoSequence("toy", frames, None, davis_palette(), ["00000", "00001", "00002"])


def test_write_sequence_writes_palette_pngs_and_overlays(tmp_path):
    seq = _sequence()
    labels = np.zeros((3, 16, 20), dtype=np.uint8)
    labels[:, 4:12, 5:15] = 1
    with ThreadPoolExecutor(2) as pool:
        for future in write_sequence(tmp_path, seq, labels, True, pool):
            future.result()
    for t, name in enumerate(seq.frame_names):
        ids, palette = read_palette_png(tmp_path / "results" / "toy" / f"{name}.png")
        assert np.array_equal(ids, labels[t]) and np.array_equal(palette[1], davis_palette()[1])
        image = np.asarray(Image.open(tmp_path / "overlays" / "toy" / f"{name}.jpg"))
        assert image.shape == (16, 20, 3)
        assert abs(int(image[0, 0, 0]) - 200) < 8  # background keeps the frame
        assert abs(int(image[8, 10, 0]) - 200) > 20  # the object is blended with its colour
    with ThreadPoolExecutor(1) as pool:
        for future in write_sequence(tmp_path / "no-overlays", seq, labels, False, pool):
            future.result()
    assert not (tmp_path / "no-overlays" / "overlays").exists()


def test_slot_maps_are_one_tile_per_slot_and_checked(tmp_path):
    seq = _sequence()
    masks = torch.rand(3, 4, 4, 5)
    with ThreadPoolExecutor(2) as pool:
        for future in write_slot_maps(tmp_path, seq, masks, pool):
            future.result()
        with pytest.raises(ValueError, match="toy: 2 slot masks for 3 frames"):
            write_slot_maps(tmp_path, seq, masks[:2], pool)
    grid = np.asarray(Image.open(tmp_path / "slots" / "toy" / "00001.jpg"))
    assert grid.shape[1] > 4 * 20  # the frame, then one tile per slot


def test_a_weak_models_slot_maps_are_visible(tmp_path):
    """Six slots sharing every patch almost evenly (a model early in training): each tile still runs from
    black to the frame's own colour, where unstretched it would be the frame at a sixth of its brightness."""
    seq = _sequence()
    masks = torch.full((3, 6, 4, 5), 1 / 6)
    masks[:, :, :2] += 0.01  # each slot leans a little towards the top half
    with ThreadPoolExecutor(1) as pool:
        for future in write_slot_maps(tmp_path, seq, masks, pool):
            future.result()
    grid = np.asarray(Image.open(tmp_path / "slots" / "toy" / "00000.jpg")).astype(int)
    for s in range(1, 7):
        tile = grid[:, s * 20:(s + 1) * 20, 0]  # red channel: the frame is 200
        assert tile[:3].mean() > 170 and tile[-3:].mean() < 30, (s, tile[:3].mean(), tile[-3:].mean())
