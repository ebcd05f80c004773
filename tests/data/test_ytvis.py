"""YouTube-VIS reader: a tiny folder in the official layout, every segmentation form, absent and overlapping
instances, the splits, the valid split without masks, and the errors a folder can cause."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dinosavi.data.davis import read_rgb
from dinosavi.data.ytvis import YtvisDataset, decode_segmentation, instance_labels
from tests.data.ytvis_sample import H, W, write_ytvis


@pytest.fixture(scope="module")
def ytvis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("ytvis")
    return root, write_ytvis(root)


def test_reads_frames_and_every_segmentation_form_exactly(ytvis) -> None:
    root, expected = ytvis
    dataset = YtvisDataset(root, "train-all")
    assert dataset.sequence_names == ["a", "b", "c"] and dataset.has_masks
    for name in dataset.sequence_names:
        seq = dataset.load(name)
        assert seq.labels is not None and seq.labels.dtype == torch.int64
        np.testing.assert_array_equal(seq.labels.numpy(), expected[name])
        assert seq.frames.shape == (len(expected[name]), 3, H, W)
        assert seq.frame_names[:2] == ["00000", "00005"]
        np.testing.assert_array_equal(seq.frames[1].permute(1, 2, 0).numpy(), read_rgb(dataset.frame_paths(name)[1]))


def test_absent_instances_overlaps_and_order(ytvis) -> None:
    root, _ = ytvis
    dataset = YtvisDataset(root, "train-all")
    a, b, c = (dataset.load(n).labels for n in "abc")
    assert a is not None and b is not None and c is not None
    assert set(a[0].unique().tolist()) == {0, 1}  # instance 2 is null in frames 0-1
    assert set(a[2].unique().tolist()) == {0, 1, 2}
    # b lists (C, D) but D is present from frame 0 and C from frame 1: D is 1, C is 2; where they overlap: void
    assert set(b[0].unique().tolist()) == {0, 1}
    assert (b[3] == 255).sum() > 0 and set(b[3].unique().tolist()) == {0, 1, 2, 255}
    assert int(c.max()) == 0  # no instance, and the crowd annotation is left out


def test_splits_hold_out_the_last_videos_as_the_anchors_do(ytvis) -> None:
    root, _ = ytvis
    assert YtvisDataset(root, "train", heldout_videos=1).sequence_names == ["a", "b"]
    assert YtvisDataset(root, "val", heldout_videos=1).sequence_names == ["c"]
    assert YtvisDataset(root, "val", heldout_videos=300).sequence_names == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"split `train` .* has no videos"):
        YtvisDataset(root, "train", heldout_videos=3)
    with pytest.raises(ValueError, match="Unknown YouTube-VIS split `validation`"):
        YtvisDataset(root, "validation")


def test_the_valid_split_has_frames_but_no_masks(ytvis) -> None:
    root, _ = ytvis
    valid = YtvisDataset(root, "valid")
    assert not valid.has_masks and valid.sequence_names == ["v"]
    seq = valid[0]
    assert seq.labels is None and seq.frames.shape == (6, 3, H, W)
    frames_only = YtvisDataset(root, "train-all", annotations=False)[0]
    assert frames_only.labels is None


def test_instance_labels_by_hand() -> None:
    one = np.array([[True, True, False]])
    two = np.array([[False, True, True]])
    labels = instance_labels([[None, one], [two, two]], 2, 1, 3)  # instance 0 appears later: it becomes id 2
    np.testing.assert_array_equal(labels, [[[0, 1, 1]], [[2, 255, 1]]])


def test_decoding_rejects_what_it_cannot_read() -> None:
    assert decode_segmentation(None, 2, 2) is None
    with pytest.raises(ValueError, match="RLE of size"):
        decode_segmentation({"size": [3, 3], "counts": [9]}, 2, 2)
    with pytest.raises(ValueError, match="expected null, an RLE dict"):
        decode_segmentation("abc", 2, 2)


def _copy(root: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(root, tmp_path / "copy")
    return tmp_path / "copy"


def test_a_broken_json_names_the_file_and_the_video(ytvis, tmp_path) -> None:
    root = _copy(ytvis[0], tmp_path)
    path = root / "train" / "instances.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["segmentations"] = data["annotations"][0]["segmentations"][:3]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"instances.json, video id 1: annotation 1 has 3 segmentations for 8 frames"):
        YtvisDataset(root, "train-all")
    with pytest.raises(FileNotFoundError, match=r"instances.json \(2021\) or .*test.json \(2019\)"):
        YtvisDataset(root, "test")


def test_the_2019_layout_reads_the_json_beside_the_folder(ytvis, tmp_path) -> None:
    root = _copy(ytvis[0], tmp_path)
    (root / "train" / "instances.json").rename(root / "train.json")
    assert YtvisDataset(root, "train-all").sequence_names == ["a", "b", "c"]
