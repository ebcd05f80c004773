"""MOVi reader: small exported videos (moving squares), both layouts and every error a folder can cause."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dinosavi.data.davis import davis_palette, read_rgb, write_palette_png
from dinosavi.data.movi import MoviDataset, read_id_png
from dinosavi.metrics.davis import evaluate_semisupervised

H, W = 24, 32


def squares(num_frames: int, ids: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Moving squares: frames (T, H, W, 3) uint8 and ids (T, H, W) uint8, id k painted over id k-1."""
    rng = np.random.default_rng(seed)
    frames = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (num_frames, H, W, 3)).copy()
    labels = np.zeros((num_frames, H, W), np.uint8)
    for k in ids:
        y, x = rng.integers(0, H - 8), rng.integers(0, W - 12)
        colour = rng.integers(0, 256, 3, dtype=np.uint8)
        for t in range(num_frames):
            frames[t, y : y + 8, x + t : x + t + 8] = colour
            labels[t, y : y + 8, x + t : x + t + 8] = k
    return frames, labels


def write_seg(path: Path, ids: np.ndarray, mode: str) -> None:
    """Write (H, W) ids as a ``mode`` PNG: ``P`` palette, ``L`` 8-bit or ``I;16`` 16-bit grayscale."""
    if mode == "P":
        write_palette_png(path, ids)
    elif mode == "L":
        Image.fromarray(ids.astype(np.uint8)).save(path)
    else:
        Image.fromarray(ids.astype(np.uint16)).save(path)
    assert Image.open(path).mode == mode


def write_video(folder: Path, name: str, frames: np.ndarray, ids: np.ndarray, ext: str, mode: str) -> None:
    """One video in the MOVi layout under ``folder`` (``rgb/<name>``, ``seg/<name>``)."""
    (folder / "rgb" / name).mkdir(parents=True)
    (folder / "seg" / name).mkdir(parents=True)
    for t, (frame, labels) in enumerate(zip(frames, ids)):
        Image.fromarray(frame).save(folder / "rgb" / name / f"{t:05d}.{ext}")
        write_seg(folder / "seg" / name / f"{t:05d}.png", labels, mode)


# name: (frames, instance ids, frame extension, segmentation mode)
VIDEOS = {
    "video_b": (4, [1, 2, 3], "png", "L"),
    "video_a": (3, [2, 5], "jpg", "P"),
    "video_c": (5, [7, 200], "png", "I;16"),
}


@pytest.fixture
def movi(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A no-split MOVi folder with three videos, and what was written to each."""
    root = tmp_path / "movi"
    written = {}
    for seed, (name, (num_frames, ids, ext, mode)) in enumerate(VIDEOS.items()):
        written[name] = squares(num_frames, ids, seed)
        write_video(root, name, *written[name], ext, mode)
    return root, written


@pytest.mark.parametrize("split", [None, "val"])
def test_reads_frames_and_ids_exactly(movi: tuple[Path, dict], split: str | None) -> None:
    root, written = movi
    dataset = MoviDataset(root, split=split)  # no `val` folder: root itself is the split
    assert dataset.sequence_names == ["video_a", "video_b", "video_c"] and len(dataset) == 3
    for index, name in enumerate(dataset.sequence_names):
        seq = dataset[index]
        frames, ids = written[name]
        T = len(frames)
        assert seq.name == name and seq.frame_names == [f"{t:05d}" for t in range(T)]
        assert seq.frames.shape == (T, 3, H, W) and seq.frames.dtype == torch.uint8
        assert seq.labels is not None and seq.labels.shape == (T, H, W) and seq.labels.dtype == torch.int64
        np.testing.assert_array_equal(seq.labels.numpy(), ids)
        paths = dataset.frame_paths(name)
        expected = frames if VIDEOS[name][2] == "png" else np.stack([read_rgb(p) for p in paths])  # JPEG is lossy
        np.testing.assert_array_equal(seq.frames.permute(0, 2, 3, 1).numpy(), expected)
        np.testing.assert_array_equal(seq.palette, davis_palette())
        assert [p.parent for p in paths] == [root / "rgb" / name] * T


def test_split_folder(movi: tuple[Path, dict], tmp_path: Path) -> None:
    root, written = movi
    split_root = tmp_path / "split"
    shutil.copytree(root, split_root / "validation")
    frames, ids = squares(3, [1], seed=9)
    write_video(split_root / "train", "other", frames, ids, "png", "L")
    train = MoviDataset(split_root, split="train")
    assert train.sequence_names == ["other"]
    np.testing.assert_array_equal(train[0].frames.permute(0, 2, 3, 1).numpy(), frames)
    validation = MoviDataset(split_root, split="validation")
    assert validation.sequence_names == ["video_a", "video_b", "video_c"]
    assert validation.frame_paths("video_b")[0] == split_root / "validation" / "rgb" / "video_b" / "00000.png"
    assert validation[1].labels is not None
    np.testing.assert_array_equal(validation[1].labels.numpy(), written["video_b"][1])


def test_mixed_frame_types_and_stray_files(tmp_path: Path) -> None:
    frames, ids = squares(4, [3], seed=1)
    write_video(tmp_path, "mixed", frames, ids, "png", "L")
    for t in (1, 3):  # odd frames as JPEG: sorting is by name, whatever the extension
        path = tmp_path / "rgb" / "mixed" / f"{t:05d}.png"
        Image.open(path).save(path.with_suffix(".jpg"))
        path.unlink()
    (tmp_path / "rgb" / "mixed" / "notes.txt").write_text("ignored")
    (tmp_path / "rgb" / "README").write_text("not a video")
    dataset = MoviDataset(tmp_path)
    assert dataset.sequence_names == ["mixed"]
    assert [p.name for p in dataset.frame_paths("mixed")] == ["00000.png", "00001.jpg", "00002.png", "00003.jpg"]
    seq = dataset.load("mixed")
    assert seq.labels is not None
    np.testing.assert_array_equal(seq.labels.numpy(), ids)
    np.testing.assert_array_equal(seq.frames[0].permute(1, 2, 0).numpy(), frames[0])


def test_perfect_prediction_scores_one(movi: tuple[Path, dict]) -> None:
    """What the evaluation runner does with a sequence works on MOVi ids."""
    seq = MoviDataset(movi[0])[1]  # video_b: ids 1, 2, 3
    assert seq.labels is not None
    scores = evaluate_semisupervised(seq.labels, seq.labels)
    assert scores.j.shape == (3, 2) and bool((scores.j == 1).all()) and bool((scores.f == 1).all())


@pytest.mark.parametrize(("mode", "bad"), [("L", 255), ("I;16", 300), ("I;16", 65535)])
def test_id_out_of_range(tmp_path: Path, mode: str, bad: int) -> None:
    ids = np.zeros((H, W), np.int64)
    ids[3, 4] = bad
    path = tmp_path / "seg.png"
    write_seg(path, ids, mode)
    with pytest.raises(ValueError, match=rf"seg\.png holds instance id {bad}; expected ids in 0\.\.254"):
        read_id_png(path)
    ids[3, 4] = 254
    write_seg(path, ids, mode)
    assert read_id_png(path)[3, 4] == 254 and read_id_png(path).dtype == np.uint8


def test_id_out_of_range_in_a_video(movi: tuple[Path, dict]) -> None:
    root, _ = movi
    path = root / "seg" / "video_c" / "00003.png"
    write_seg(path, np.full((H, W), 255), "I;16")
    dataset = MoviDataset(root)
    dataset.load("video_a")  # other videos are unaffected
    with pytest.raises(ValueError, match=r"video_c/00003\.png holds instance id 255"):
        dataset.load("video_c")


def test_rgb_segmentation(tmp_path: Path) -> None:
    path = tmp_path / "seg.png"
    Image.new("RGB", (W, H)).save(path)
    with pytest.raises(ValueError, match=r"seg\.png has PIL mode 'RGB'; expected one of P, L"):
        read_id_png(path)


def test_corrupt_segmentation(movi: tuple[Path, dict]) -> None:
    root, _ = movi
    path = root / "seg" / "video_b" / "00001.png"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ValueError, match=r"video_b/00001\.png"):
        MoviDataset(root).load("video_b")


def test_missing_rgb_folder(tmp_path: Path) -> None:
    (tmp_path / "seg").mkdir()
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'rgb'}; split 'val' \(no folder .*val\)"):
        MoviDataset(tmp_path, split="val")
    with pytest.raises(FileNotFoundError, match=rf"frame folder not found: {tmp_path / 'rgb'}; expected rgb/"):
        MoviDataset(tmp_path)


def test_rgb_without_seg_folder(movi: tuple[Path, dict]) -> None:
    root, _ = movi
    shutil.rmtree(root / "seg")
    with pytest.raises(FileNotFoundError, match=rf"segmentation folder not found: {root / 'seg'}"):
        MoviDataset(root)


def test_video_without_seg_folder(movi: tuple[Path, dict]) -> None:
    root, _ = movi
    shutil.rmtree(root / "seg" / "video_b")
    with pytest.raises(FileNotFoundError, match=rf"{root / 'seg' / 'video_b'}; expected one PNG per frame"):
        MoviDataset(root)


def test_no_videos(tmp_path: Path) -> None:
    (tmp_path / "rgb").mkdir()
    (tmp_path / "seg").mkdir()
    with pytest.raises(FileNotFoundError, match=rf"No video folders in {tmp_path / 'rgb'}"):
        MoviDataset(tmp_path)


def test_video_without_frames(movi: tuple[Path, dict]) -> None:
    root, _ = movi
    (root / "rgb" / "video_d").mkdir()
    (root / "rgb" / "video_d" / "meta.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=rf"No frames in {root / 'rgb' / 'video_d'}"):
        MoviDataset(root)


def test_missing_segmentation_for_a_frame(movi: tuple[Path, dict]) -> None:
    root, _ = movi
    (root / "seg" / "video_a" / "00002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"frame .*video_a/00002\.jpg: expected .*seg/video_a/00002\.png"):
        MoviDataset(root)


def test_duplicate_stems(movi: tuple[Path, dict]) -> None:
    root, _ = movi
    Image.new("RGB", (W, H)).save(root / "rgb" / "video_a" / "00001.png")
    with pytest.raises(ValueError, match=r"00001\.jpg and .*00001\.png of video 'video_a' share a stem"):
        MoviDataset(root)


def test_size_mismatch(movi: tuple[Path, dict]) -> None:
    root, _ = movi
    write_seg(root / "seg" / "video_b" / "00002.png", np.zeros((H, W + 1)), "L")
    expected = rf"video_b/00002\.png is {W + 1}x{H} \(WxH\) but frame .*00002\.png is {W}x{H}; expected equal"
    with pytest.raises(ValueError, match=expected):
        MoviDataset(root).load("video_b")


def test_unknown_video(movi: tuple[Path, dict]) -> None:
    with pytest.raises(KeyError, match="ghost"):
        MoviDataset(movi[0]).frame_paths("ghost")
