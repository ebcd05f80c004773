"""Part of a split: some sequences in split order, a frame range cut the same way from frames, masks, names
and source paths, and errors that name data.sequences / data.start / data.stop."""

from __future__ import annotations

import pytest
import torch

from dinosavi.data.davis import DavisDataset
from dinosavi.data.subset import SequenceSubset, select_names


def test_names_keep_the_split_order_and_unknown_ones_are_named():
    assert select_names(["a", "b", "c"], None, "split val") == ["a", "b", "c"]
    assert select_names(["a", "b", "c"], ["c", "a"], "split val") == ["a", "c"]
    with pytest.raises(ValueError, match=r"data\.sequences: blakswan not in split val of x; it holds a, b, c"):
        select_names(["a", "b", "c"], ["a", "blakswan"], "split val of x")
    with pytest.raises(ValueError, match=r"data\.sequences=\[\] selects nothing"):
        select_names(["a"], [], "split val")


def test_a_frame_range_cuts_frames_masks_names_and_paths_alike(tiny_synthetic):
    whole = DavisDataset(tiny_synthetic, "train")
    subset = SequenceSubset(whole, ["synth-0002", "synth-0001"], start=2, stop=5)
    assert subset.sequence_names == ["synth-0001", "synth-0002"] and len(subset) == 2
    seq, full = subset[1], whole[2]
    assert seq.name == "synth-0002" and seq.frame_names == ["00002", "00003", "00004"]
    assert torch.equal(seq.frames, full.frames[2:5]) and seq.labels is not None and full.labels is not None
    assert torch.equal(seq.labels, full.labels[2:5])  # the first frame processed brings its own mask
    assert [p.stem for p in subset.frame_paths("synth-0002")] == seq.frame_names
    assert SequenceSubset(whole, None, start=4)[0].frame_names == ["00004", "00005"]  # to the end


@pytest.mark.parametrize(("start", "stop", "message"), [
    (3, 3, r"data\.start=3, data\.stop=3: expected 0 <= start < stop"),
    (-1, None, r"data\.start=-1, data\.stop=None: expected 0 <= start"),
])
def test_a_malformed_range_names_the_keys(tiny_synthetic, start, stop, message):
    with pytest.raises(ValueError, match=message):
        SequenceSubset(DavisDataset(tiny_synthetic, "train"), None, start, stop)


def test_a_range_past_a_sequences_end_names_it(tiny_synthetic):
    with pytest.raises(ValueError, match=r"data\.start=9 is past the end of sequence synth-0000 \(6 frames\)"):
        SequenceSubset(DavisDataset(tiny_synthetic, "train"), None, start=9)[0]
