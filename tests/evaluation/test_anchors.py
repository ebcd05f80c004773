"""The anchors' protocol (``eval=videosaur``, ``eval=slotcontrast``): the view each paper scores, the samples,
equality with our unsupervised evaluation where the definitions coincide, and a YouTube-VIS-format folder that
trains a few steps and is scored under both protocols, every number recomputed by hand from the PNGs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dinosavi.cli import modes
from dinosavi.data.davis import DavisDataset, VideoSequence, davis_palette, read_palette_png
from dinosavi.encoders.registry import create_encoder
from dinosavi.evaluation.anchors import ANCHOR_PROTOCOLS, AnchorProtocol, anchor_view, evaluate_anchor, samples
from dinosavi.evaluation.options import EvalOptions
from dinosavi.evaluation.runner import evaluate_slots
from dinosavi.features.source import FeatureSource
from dinosavi.features.space import resolution
from tests.conftest import compose_config
from tests.data.ytvis_sample import write_ytvis
from tests.evaluation.test_vos import binding_model
from tests.metrics.test_videosaur import one_hot_scores

QUIET = {"overlays": False, "videos": False, "report": False}


def test_the_two_papers_differ_in_sampling_and_resolution_only():
    videosaur, slotcontrast = ANCHOR_PROTOCOLS["videosaur"], ANCHOR_PROTOCOLS["slotcontrast"]
    assert (videosaur.chunk_frames, videosaur.pre_short_side, videosaur.input_size, videosaur.mask_size) == (6, 320,
                                                                                                              224, 224)
    assert (slotcontrast.chunk_frames, slotcontrast.input_size, slotcontrast.mask_size) == (None, 518, 518)
    assert compose_config("mode=eval", "eval=videosaur").eval.protocol == "videosaur"
    assert not compose_config("mode=eval", "eval=slotcontrast").eval.lock_on


def test_samples_are_consecutive_clips_with_the_remainder_dropped():
    assert samples(13, 6) == [range(0, 6), range(6, 12)]
    assert samples(5, 6) == [] and samples(5, None) == [range(5)]


def test_the_view_crops_the_centre_square_and_resizes_as_the_anchors_do():
    labels = torch.arange(4 * 7).reshape(1, 4, 7) % 250  # columns 0..6; the centred 4x4 starts at round(1.5) = 2
    frames = torch.stack([labels.to(torch.uint8)] * 3, 1)
    seq = VideoSequence("v", frames, labels, davis_palette(), ["0"])
    view = anchor_view(seq, AnchorProtocol("t", None, None, 4, 8, "test"))
    assert view.frames.shape == (1, 3, 4, 4) and view.labels is not None and view.labels.shape == (1, 8, 8)
    torch.testing.assert_close(view.frames[0, 0].long(), labels[0, :, 2:6])
    torch.testing.assert_close(view.labels[0], labels[0, :, 2:6].repeat_interleave(2, 0).repeat_interleave(2, 1))
    pre = anchor_view(seq, AnchorProtocol("t", None, 8, 8, 8, "test"))  # short side 8, long side floor(14) = 14
    assert pre.labels is not None and pre.labels.shape == (1, 8, 8)
    torch.testing.assert_close(pre.labels[0], labels[0].repeat_interleave(2, 0).repeat_interleave(2, 1)[:, 3:11])


@pytest.fixture(scope="module")
def square_synthetic(tmp_path_factory):
    from dinosavi.data.synthetic import SyntheticSpec, generate_synthetic

    spec = SyntheticSpec(num_videos=3, num_frames=5, height=64, width=64, val_videos=2, seed=1)
    return generate_synthetic(tmp_path_factory.mktemp("data") / "square", spec)


def test_whole_videos_score_what_our_unsupervised_evaluation_scores(square_synthetic, tmp_path):
    """Whole square videos, no resizing, no void: the same masks, the same FG-ARI and mBO as ``eval.lock_on=false``
    (``dinosavi.metrics.objects``); the frame-level scores differ by their weighting only."""
    encoder = create_encoder("efficientnet_lite0", stride=8).freeze()
    model, dataset = binding_model(encoder.feature_dim), DavisDataset(square_synthetic, "val")
    source = FeatureSource(encoder, resolution("eval", (64, 64), 64, encoder.patch_size))
    options = EvalOptions(lock_on=False, **QUIET)
    ours = evaluate_slots(model, source, dataset, options, tmp_path / "ours", split="val", seed=3)
    whole = AnchorProtocol("whole", None, None, 64, 64, "test")
    anchor = evaluate_anchor(model, source, dataset, whole, options, tmp_path / "anchor", split="val", seed=3)
    for name in dataset.sequence_names:
        for png in sorted((tmp_path / "ours" / "results" / name).glob("*.png")):
            assert png.read_bytes() == (tmp_path / "anchor" / "results" / name / png.name).read_bytes()
    assert anchor["FG-ARI"] == pytest.approx(ours["FG-ARI"], abs=1e-12)
    assert anchor["mBO"] == pytest.approx(ours["mBO"], abs=1e-12)


def _hand_scores(out: Path, dataset, protocol: AnchorProtocol) -> dict[str, float]:
    """The protocol's four numbers recomputed from the written PNGs and the view of the truth, sample by sample
    with :func:`one_hot_scores` (the papers' one-hot definitions), averaged as their torchmetrics do."""
    video, frame = [], []
    for index in range(len(dataset)):
        view = anchor_view(dataset[index], protocol)
        for clip in samples(len(view.frames), protocol.chunk_frames):
            true = view.labels[clip.start : clip.stop].numpy()
            pred = np.stack([read_palette_png(out / "results" / view.name / f"{view.frame_names[t]}.png")[0]
                             for t in clip])
            if ((true != 0) & (true != 255)).any():
                video.append(one_hot_scores(true, pred))
            frame += [one_hot_scores(t[None], p[None]) for t, p in zip(true, pred) if ((t != 0) & (t != 255)).any()]
    return {"FG-ARI": float(np.mean([v[0] for v in video])), "mBO": float(np.mean([v[1] for v in video])),
            "FG-ARI-frame": float(np.mean([f[0] for f in frame])), "mBO-frame": float(np.mean([f[1] for f in frame]))}


@pytest.fixture(scope="module")
def ytvis_run(tmp_path_factory):
    """A YouTube-VIS-format folder and a model trained on its train split for 2 steps."""
    root = tmp_path_factory.mktemp("ytvis")
    write_ytvis(root)
    data = ["data=ytvis", f"data.root={root}", "data.heldout_videos=2", "device=cpu", "encoder=efficientnet_lite0"]
    cfg = compose_config("mode=train", "hparam=demo", *data, "train.input_size=[32,48]", "data.batch_size=2",
                         "data.frames_per_clip=2", "data.clips_per_video=2", "train.max_steps=2", "train.save_every=2")
    ckpt = modes.run_train(cfg, tmp_path_factory.mktemp("train"), [])
    return root, data, ckpt


@pytest.mark.parametrize(("protocol", "side"), [
    ("videosaur", None),
    ("slotcontrast", 64),  # its whole-video sampling, at 64 x 64: 518 x 518 takes 25 s on one CPU thread
    pytest.param("slotcontrast", None, marks=pytest.mark.slow),
])
def test_a_ytvis_folder_trains_and_scores_under_both_protocols(ytvis_run, protocol, side, tmp_path, monkeypatch):
    from dataclasses import replace

    from dinosavi.data.ytvis import YtvisDataset

    root, data, ckpt = ytvis_run
    if side is not None:
        smaller = replace(ANCHOR_PROTOCOLS[protocol], input_size=side, mask_size=side)
        monkeypatch.setitem(ANCHOR_PROTOCOLS, protocol, smaller)
    overrides = [f"resume={ckpt}", *data, f"eval={protocol}"]
    scores = modes.run_eval(compose_config("mode=eval", *overrides), tmp_path, overrides)
    report = json.loads((tmp_path / f"anchor-{protocol}-val.json").read_text())
    assert report["global"] == pytest.approx(scores) and report["split"] == "val"
    dataset = YtvisDataset(root, "val", heldout_videos=2)  # videos b (7 frames, an overlap) and c (no instance)
    assert dataset.sequence_names == ["b", "c"]
    expected = {"videosaur": {"samples": 2, "frames": 12}, "slotcontrast": {"samples": 2, "frames": 13}}[protocol]
    counts = report["counts"]
    assert (counts["samples"], counts["frames"], counts["scored_samples"]) == (expected["samples"],
                                                                                expected["frames"], 1)
    assert scores == pytest.approx(_hand_scores(tmp_path, dataset, ANCHOR_PROTOCOLS[protocol]), abs=1e-12)
    assert all(not math.isnan(v) for v in scores.values())
    side = ANCHOR_PROTOCOLS[protocol].mask_size
    assert read_palette_png(tmp_path / "results" / "b" / "00000.png")[0].shape == (side, side)
    assert not (tmp_path / "results" / "b" / "00030.png").exists() or protocol == "slotcontrast"  # 7th frame dropped


def test_ytvis_caches_segments_and_refuses_to_score_the_valid_split(ytvis_run, tmp_path):
    root, data, ckpt = ytvis_run
    cached = modes.run_cache(compose_config("mode=cache", *data, f"features.store={tmp_path / 'store'}",
                                            "features.resolutions=[train]", "train.input_size=[32,48]"),
                             tmp_path / "cache", [])
    assert cached["groups"] == 4 and cached["frames"] == 8 + 7 + 6 + 6  # train/ (3 videos) and valid/ (1)
    overrides = [f"resume={ckpt}", *data, "data.split=valid"]
    with pytest.raises(ValueError, match=r"split `valid` .* ships without masks"):
        modes.run_eval(compose_config("mode=eval", *overrides), tmp_path / "eval", overrides)
    overrides = [f"resume={ckpt}", f"input={root / 'valid' / 'JPEGImages' / 'v'}", "device=cpu",
                 "eval.short_side=32", "eval.videos=false", "eval.report=false"]
    modes.run_segment(compose_config("mode=segment", *overrides), tmp_path / "segment", overrides)
    assert len(list((tmp_path / "segment" / "results" / "v").glob("*.png"))) == 6  # results/<video>/, as eval's
