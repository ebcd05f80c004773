"""DAVIS reader: the real sample, palette PNG I/O and every error a user's folder can cause."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dinosavi.data.davis import (
    DavisDataset,
    davis_palette,
    read_frames,
    read_palette_png,
    write_palette_png,
)


def test_real_sample_blackswan(davis_root: Path) -> None:
    dataset = DavisDataset(davis_root, split="val")
    assert dataset.sequence_names == ["blackswan", "car-shadow", "drift-chicane", "drift-straight"]
    assert len(dataset) == 4
    sequence = dataset.load("blackswan")
    assert sequence.frames.shape == (50, 3, 480, 854) and sequence.frames.dtype == torch.uint8
    assert sequence.labels is not None
    assert sequence.labels.shape == (50, 480, 854) and sequence.labels.dtype == torch.int64
    assert set(sequence.labels.unique().tolist()) <= {0, 1}
    assert (sequence.labels == 1).any(dim=(1, 2)).all()
    assert sequence.palette.shape == (256, 3) and sequence.palette.dtype == np.uint8
    assert tuple(sequence.palette[1]) == (128, 0, 0)
    assert sequence.frame_names[0] == "00000" and sequence.frame_names[-1] == "00049"


@pytest.mark.parametrize(("mode", "label_frames"), [("first", 1), ("none", None)])
def test_annotation_modes(davis_root: Path, mode: str, label_frames: int | None) -> None:
    sequence = DavisDataset(davis_root, annotations=mode)[1]  # type: ignore[arg-type]
    assert sequence.name == "car-shadow" and sequence.frames.shape[0] == 40
    if label_frames is None:
        assert sequence.labels is None
    else:
        assert sequence.labels is not None and sequence.labels.shape == (1, 480, 854)


def test_davis_palette() -> None:
    palette = davis_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert [tuple(c) for c in palette[:4]] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
    assert len({tuple(c) for c in palette}) == 256


def test_palette_png_roundtrip(tmp_path: Path) -> None:
    labels = np.random.default_rng(0).integers(0, 7, (30, 40)).astype(np.uint8)
    labels[0, 0] = 255
    path = tmp_path / "mask.png"
    write_palette_png(path, labels, davis_palette())
    read, palette = read_palette_png(path)
    np.testing.assert_array_equal(read, labels)
    np.testing.assert_array_equal(palette, davis_palette())
    assert Image.open(path).mode == "P"
    assert [p.name for p in tmp_path.iterdir()] == ["mask.png"]  # no temp file left


def test_write_palette_png_rejects_bad_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        write_palette_png(tmp_path / "m.png", np.full((4, 4), 300))
    with pytest.raises(ValueError, match="expected \\(H, W\\)"):
        write_palette_png(tmp_path / "m.png", np.zeros((2, 4, 4), np.uint8))


@pytest.fixture
def small_davis(davis_root: Path, tmp_path: Path) -> Path:
    """A 3-frame copy of blackswan in the DAVIS layout."""
    root = tmp_path / "davis"
    for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        folder = root / kind / "480p" / "blackswan"
        folder.mkdir(parents=True)
        for t in range(3):
            shutil.copy(davis_root / kind / "480p" / "blackswan" / f"{t:05d}.{ext}", folder)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("blackswan\n")
    return root


def test_small_copy_loads(small_davis: Path) -> None:
    sequence = DavisDataset(small_davis)[0]
    assert sequence.frames.shape == (3, 3, 480, 854)
    assert sequence.labels is not None and sequence.labels.shape == (3, 480, 854)


def test_missing_split_file(small_davis: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train\.txt"):
        DavisDataset(small_davis, split="train")


def test_missing_sequence_folder(small_davis: Path) -> None:
    (small_davis / "ImageSets" / "2017" / "val.txt").write_text("blackswan\nghost\n")
    with pytest.raises(FileNotFoundError, match="JPEGImages/480p/ghost"):
        DavisDataset(small_davis)[1]
    shutil.rmtree(small_davis / "Annotations" / "480p" / "blackswan")
    with pytest.raises(FileNotFoundError, match="Annotations/480p/blackswan"):
        DavisDataset(small_davis)[0]


def test_missing_annotation_for_a_frame(small_davis: Path) -> None:
    (small_davis / "Annotations" / "480p" / "blackswan" / "00001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"'00001'.*00001\.png"):
        DavisDataset(small_davis)[0]
    assert DavisDataset(small_davis, annotations="first")[0].labels is not None  # frame 0 suffices


def test_rgb_annotation(small_davis: Path) -> None:
    path = small_davis / "Annotations" / "480p" / "blackswan" / "00002.png"
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(ValueError, match=r"00002\.png.*expected a palette \(mode P\) PNG"):
        DavisDataset(small_davis)[0]


def test_greyscale_annotation(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.fromarray(np.zeros((8, 8), np.uint8), mode="L").save(path)
    with pytest.raises(ValueError, match=r"grey\.png.*mode 'L'.*expected a palette"):
        read_palette_png(path)


def test_corrupt_jpeg(small_davis: Path) -> None:
    path = small_davis / "JPEGImages" / "480p" / "blackswan" / "00001.jpg"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"00001\.jpg"):
        DavisDataset(small_davis)[0]


def test_frame_size_differs_from_annotation(small_davis: Path) -> None:
    path = small_davis / "Annotations" / "480p" / "blackswan" / "00000.png"
    labels, palette = read_palette_png(path)
    write_palette_png(path, labels[:240], palette)
    with pytest.raises(ValueError, match=r"00000\.png.*expected equal sizes"):
        DavisDataset(small_davis)[0]


def test_frames_of_different_sizes(small_davis: Path) -> None:
    path = small_davis / "JPEGImages" / "480p" / "blackswan" / "00002.jpg"
    Image.open(path).resize((100, 50)).save(path)
    with pytest.raises(ValueError, match=r"00002\.jpg"):
        read_frames(DavisDataset(small_davis).frame_paths("blackswan"))
