"""The anchors' FG-ARI and mBO: hand-computed values, their one-hot definition, and equality with
:mod:`dinosavi.metrics.objects` where the definitions coincide."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dinosavi.metrics.objects import fg_ari, mean_best_overlap
from dinosavi.metrics.results import AnchorTable
from dinosavi.metrics.videosaur import anchor_sample, video_fg_ari, video_mbo

# a video of 2 frames of 1 x 4 pixels: 0 background, 255 void (an overlap)
TRUE = torch.tensor([[[1, 1, 2, 0]], [[1, 2, 2, 255]]])
PRED = torch.tensor([[[1, 1, 1, 2]], [[1, 2, 2, 2]]])


def test_video_fg_ari_by_hand() -> None:
    # instance pixels (6): truth 1 -> pred [1, 1, 1], truth 2 -> pred [1, 2, 2]; contingency [[3, 0], [1, 2]]
    # sum n(n-1) = 6 + 2 = 8; rows a = [3, 3] -> 12; columns b = [4, 2] -> 14; n(n-1) = 30
    # expected = 12 * 14 / 30 = 5.6, max = (12 + 14) / 2 = 13, ARI = (8 - 5.6) / (13 - 5.6) = 12 / 37
    assert video_fg_ari(TRUE, PRED) == pytest.approx(12 / 37, abs=1e-12)


def test_video_mbo_by_hand() -> None:
    # kept pixels (7: the void one is left out): segment 1 covers 4, segment 2 covers 3
    # instance 1 (3 px, all in segment 1): IoU 3 / (3 + 4 - 3) = 3/4
    # instance 2 (3 px: 1 in segment 1, 2 in segment 2): max(1 / 6, 2 / (3 + 3 - 2)) = 1/2
    assert video_mbo(TRUE, PRED) == pytest.approx((3 / 4 + 1 / 2) / 2, abs=1e-12)


def test_frame_scores_by_hand() -> None:
    sample = anchor_sample(TRUE, PRED)
    # frame 0: instance pixels truth [1, 1, 2] -> pred [1, 1, 1]: one predicted cluster, ARI 0;
    #   mBO: instance 1 IoU 2/3, instance 2 IoU 1/(1 + 3 - 1) = 1/3 -> 1/2
    # frame 1: truth [1, 2, 2] -> pred [1, 2, 2]: the same partition, ARI 1; both IoUs 1
    assert sample.frame_fg_ari == pytest.approx([0.0, 1.0])
    assert sample.frame_mbo == pytest.approx([0.5, 1.0])
    assert sample.fg_ari == pytest.approx(12 / 37) and sample.mbo == pytest.approx(0.625)


def test_samples_without_instances_are_skipped_not_scored() -> None:
    empty = torch.zeros(2, 3, 3, dtype=torch.long)
    assert math.isnan(video_fg_ari(empty, empty)) and math.isnan(video_mbo(empty, empty))
    table = AnchorTable()
    table.add("v", 0.5, 0.25, [0.5, float("nan")], [0.25, float("nan")])
    table.add("v", float("nan"), float("nan"), [float("nan")], [float("nan")])
    table.add("w", 1.0, 0.75, [1.0, 0.0, 1.0], [0.75, 0.5, 1.0])
    means = table.global_means()
    assert means["FG-ARI"] == pytest.approx(0.75) and means["mBO"] == pytest.approx(0.5)
    assert means["FG-ARI-frame"] == pytest.approx((0.5 + 1.0 + 0.0 + 1.0) / 4)  # every frame of the split
    assert table.counts() == {"videos": 2, "samples": 3, "frames": 6, "scored_samples": 2, "scored_frames": 4}


def one_hot_scores(true: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """The anchors' definitions on binary masks: instance channels (no background channel), void zeroed in
    both, a one-hot contingency ``sum_p true[p, c] * pred[p, k]``."""
    ids = [i for i in np.unique(true) if i not in (0, 255)]
    keep = (true != 255).reshape(-1)
    t = np.stack([(true == i).reshape(-1) & keep for i in ids], 1).astype(float)
    p = np.stack([(pred == k).reshape(-1) & keep for k in np.unique(pred)], 1).astype(float)
    n = t.T @ p
    a, b = n.sum(1), n.sum(0)
    total = a.sum()
    rindex, aindex, bindex = (n * (n - 1)).sum(), (a * (a - 1)).sum(), (b * (b - 1)).sum()
    expected = aindex * bindex / max(total * (total - 1), 1)
    denominator = (aindex + bindex) / 2 - expected
    ari = 1.0 if denominator == 0 else (rindex - expected) / denominator
    iou = n / (t.sum(0)[:, None] + p.sum(0)[None, :] - n)
    return ari, float(iou.max(1).mean())


@pytest.mark.parametrize("seed", range(4))
def test_matches_the_one_hot_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 4, (3, 7, 9))
    true[rng.random(true.shape) < 0.1] = 255
    pred = rng.integers(0, 5, (3, 7, 9))
    ari, mbo = one_hot_scores(true, pred)
    assert video_fg_ari(true, pred) == pytest.approx(ari, abs=1e-12)
    assert video_mbo(true, pred) == pytest.approx(mbo, abs=1e-12)


def test_equals_the_existing_metrics_where_the_definitions_coincide(tiny_synthetic) -> None:
    """On whole synthetic videos (no void), the anchors' FG-ARI and mBO are ``objects.fg_ari`` of the flattened
    video and ``mean_best_overlap`` at video level; with void they part (void leaves mBO's areas here)."""
    from dinosavi.data.davis import DavisDataset

    dataset = DavisDataset(tiny_synthetic, "train")
    for index in range(len(dataset)):
        true = dataset[index].labels
        assert true is not None
        pred = torch.randint(0, 6, true.shape, generator=torch.Generator().manual_seed(index))
        assert video_fg_ari(true, pred) == pytest.approx(float(fg_ari(true.reshape(1, -1), pred.reshape(1, -1))[0]),
                                                         abs=1e-12)
        assert video_mbo(true, pred) == pytest.approx(mean_best_overlap(true, pred, video_level=True), abs=1e-12)
    voided = TRUE.clone()
    assert video_mbo(voided, PRED) != pytest.approx(mean_best_overlap(torch.where(voided == 255, 0, voided), PRED))
