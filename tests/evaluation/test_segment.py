"""mode=segment: a user's video through a slot model (unsupervised, lock-on) or label propagation, streamed;
PNGs, overlays, slot maps, an MP4 at the source rate and report.html; the CLI end to end."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from dinosavi.cli.modes import options
from dinosavi.data.davis import DavisDataset, davis_palette, read_palette_png
from dinosavi.data.inputs import StreamOptions, find_sources, stream_frames
from dinosavi.encoders.base import ResizeRule
from dinosavi.encoders.registry import create_encoder
from dinosavi.evaluation.options import EvalOptions
from dinosavi.evaluation.segment import first_frame, segment_video, slot_segmenter
from dinosavi.evaluation.vos import segment_sequence
from dinosavi.features.source import FeatureSource
from dinosavi.features.space import Resolution
from dinosavi.viz.video import write_video
from tests.conftest import REPO_ROOT, compose_config


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "dinosavi", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _model_and_encoder():
    from dinosavi.models.factory import build_model

    cfg = compose_config("mode=train", "hparam=demo", "encoder=efficientnet_lite0")
    encoder = create_encoder("efficientnet_lite0", stride=8).freeze()
    return build_model(cfg.model, encoder.feature_dim).eval(), encoder, cfg


@pytest.fixture(scope="module")
def val_sequence(tiny_synthetic):
    """The tiny synthetic val sequence (6 frames, 64x80): its frame folder and first mask."""
    seq = DavisDataset(tiny_synthetic, "val")[0]
    return seq, tiny_synthetic / "JPEGImages" / "480p" / seq.name, tiny_synthetic / "Annotations" / "480p" / seq.name


def test_a_frame_folder_segments_like_mode_eval(val_sequence, tmp_path):
    """Streamed from its frame folder, a sequence gets the labels segment_sequence gives on the whole tensor
    (what mode=eval runs), and every output is written per frame."""
    seq, frames_dir, masks_dir = val_sequence
    model, encoder, cfg = _model_and_encoder()
    rule = ResizeRule(short_side=64, multiple_of=encoder.patch_size)
    (source,) = find_sources(frames_dir)
    stream = stream_frames(source, StreamOptions())
    first = seq.labels[0]
    decoded, read_ahead = [], []

    def counted(frames):
        for item in frames:
            decoded.append(item[0])
            yield item

    stream.frames = counted(stream.frames)
    source = FeatureSource(encoder, Resolution(rule))
    inner = slot_segmenter(model, source, 2, first, stream.size, options(cfg.eval, EvalOptions), seed=0)

    def segmenter(frames):
        for t, out in enumerate(inner(frames)):
            read_ahead.append(len(decoded) - t - 1)
            yield out

    with ThreadPoolExecutor(2) as pool:
        entry = segment_video(stream, segmenter, tmp_path, davis_palette(), pool=pool)
    assert max(read_ahead) <= 2  # at most one chunk of frames waits for its labels
    expected = segment_sequence(model, source.features(seq.frames), first, options(cfg.eval, EvalOptions),
                                generator=torch.Generator().manual_seed(0))
    pred = np.stack([read_palette_png(tmp_path / "results" / seq.name / f"{n}.png")[0] for n in seq.frame_names])
    assert np.array_equal(pred, expected.labels.numpy())
    assert np.array_equal(pred[0], read_palette_png(masks_dir / "00000.png")[0])
    for folder in ("overlays", "slots"):
        assert sorted(p.stem for p in (tmp_path / folder / seq.name).glob("*.jpg")) == seq.frame_names
    assert entry.num_frames == len(seq.frame_names) and entry.size == (64, 80)
    assert entry.video == f"videos/{seq.name}.mp4"
    assert len(entry.thumbnails) == 4 and len(entry.maps) == 1
    with av.open(str(tmp_path / "videos" / f"{seq.name}.mp4")) as container:
        assert container.streams.video[0].average_rate == 24  # a frame folder plays at segment.folder_fps
        assert sum(1 for _ in container.decode(video=0)) == len(seq.frame_names)


def test_mode_score_reads_a_segment_run_like_an_eval_run(val_sequence, tiny_synthetic, tmp_path):
    """One results layout: ``mode=score results=<segment run dir>`` scores its ``results/<video>/`` PNGs."""
    from dinosavi.cli.modes import run_score

    seq, frames_dir, _ = val_sequence
    model, encoder, cfg = _model_and_encoder()
    (source,) = find_sources(frames_dir)
    stream = stream_frames(source, StreamOptions())
    features = FeatureSource(encoder, Resolution(ResizeRule(short_side=64, multiple_of=encoder.patch_size)))
    segmenter = slot_segmenter(model, features, 2, seq.labels[0], stream.size, options(cfg.eval, EvalOptions), 0)
    with ThreadPoolExecutor(2) as pool:
        segment_video(stream, segmenter, tmp_path / "segment", davis_palette(), pool=pool)
    scored = [f"results={tmp_path / 'segment'}", f"data.root={tiny_synthetic}", "data.split=val"]
    scores = run_score(compose_config("mode=score", *scored), tmp_path / "score", scored)
    assert 0.0 <= scores["J&F-Mean"] <= 1.0
    assert (tmp_path / "score" / "per-sequence_results-val.csv").read_text().count(seq.name) >= 1


@pytest.fixture(scope="module")
def cli_inputs(tiny_synthetic, val_sequence, tmp_path_factory):
    """A tiny checkpoint trained through the CLI, and the val sequence as an .mp4 with its first mask."""
    seq, _, masks_dir = val_sequence
    base = tmp_path_factory.mktemp("segment-cli")
    data = [f"data.root={tiny_synthetic}", "data.synthetic.num_videos=4", "data.synthetic.num_frames=6",
            "data.synthetic.height=64", "data.synthetic.width=80", "data.synthetic.val_videos=1"]
    _run("mode=train", "hparam=demo", "encoder=efficientnet_lite0", "data=synthetic", *data, "train.max_steps=2",
         "train.input_size=[64,80]", "data.batch_size=4", f"hydra.run.dir={base / 'train'}")
    video = write_video(base / "clip.mp4", (f.permute(1, 2, 0).numpy() for f in seq.frames), fps=24)
    return base / "train" / "checkpoints" / "last.safetensors", video, masks_dir / "00000.png"


def _check_outputs(run: Path, frames: int, maps: str) -> np.ndarray:
    """The run's PNGs, overlays, maps, MP4 and report; returns the ``(T, H, W)`` ids."""
    names = [f"{t:05d}" for t in range(frames)]
    assert sorted(p.stem for p in (run / "results" / "clip").glob("*.png")) == names
    for folder in ("overlays", maps):
        assert sorted(p.stem for p in (run / folder / "clip").glob("*.jpg")) == names
    with av.open(str(run / "videos" / "clip.mp4")) as container:
        assert container.streams.video[0].average_rate == 24
        assert sum(1 for _ in container.decode(video=0)) == frames
    page = _Page()
    page.feed((run / "report.html").read_text())
    assert ("video", {"controls": None, "loop": None, "muted": None, "src": "videos/clip.mp4"}) in page.tags
    assert sum(1 for tag, attrs in page.tags if tag == "img" and (attrs["src"] or "").startswith("data:")) >= 3
    assert not list(run.rglob("*.tmp"))
    return np.stack([read_palette_png(run / "results" / "clip" / f"{n}.png")[0] for n in names])


@pytest.mark.slow
def test_cli_segments_a_video_unsupervised_and_with_lock_on(cli_inputs, tmp_path):
    ckpt, video, mask = cli_inputs
    _run("mode=segment", f"input={video}", f"resume={ckpt}", "eval.short_side=64", f"hydra.run.dir={tmp_path / 'u'}")
    ids = _check_outputs(tmp_path / "u", 6, "slots")
    assert ids.min() >= 1 and ids.max() <= 6  # every one of the demo's 6 slots is a segment; no background
    proc = _run("mode=segment", f"input={video}", f"resume={ckpt}", f"first_mask={mask}", "eval.short_side=64",
                "segment.stop=4", f"hydra.run.dir={tmp_path / 'lock'}")
    assert "frames/s" in proc.stdout and "report:" in proc.stdout
    ids = _check_outputs(tmp_path / "lock", 4, "slots")
    first, _ = read_palette_png(mask)
    assert np.array_equal(ids[0], first) and set(np.unique(ids)) <= set(np.unique(first))


@pytest.mark.slow
def test_cli_propagates_a_first_mask_through_a_video(cli_inputs, tmp_path):
    _, video, mask = cli_inputs
    args = [f"input={video}", f"first_mask={mask}", "encoder=efficientnet_lite0", "propagate.short_side=64"]
    _run("mode=segment", "method=propagate", *args, f"hydra.run.dir={tmp_path / 'a'}")
    ids = _check_outputs(tmp_path / "a", 6, "soft")
    first, _ = read_palette_png(mask)
    assert np.array_equal(ids[0], first) and len(np.unique(ids[-1])) > 1  # objects survive to the last frame
    _run("mode=propagate", *args, f"hydra.run.dir={tmp_path / 'b'}")  # mode=propagate on one video: the same
    assert np.array_equal(_check_outputs(tmp_path / "b", 6, "soft"), ids)


def test_first_mask_belongs_to_the_first_frame_processed():
    mask = Path("00000.png")
    assert first_frame(0, None, mask) == 0 and first_frame(6, None, None) == 6
    assert first_frame(0, 6, mask) == 6 and first_frame(6, 6, mask) == 6  # segmenting starts at the masked frame
    with pytest.raises(ValueError, match=r"first_mask=00000\.png with segment\.start=6: .* taken as frame 6's\. "
                                         r"If it is, say so with segment\.first_mask_frame=6"):
        first_frame(6, None, mask)  # the mask of frame 0 was silently given to frame 6
    with pytest.raises(ValueError, match=r"segment\.first_mask_frame=6 with segment\.start=3: .* set it to 6"):
        first_frame(3, 6, mask)
    with pytest.raises(ValueError, match=r"segment\.first_mask_frame=6 says .* but no first_mask= is given"):
        first_frame(0, 6, None)


def test_a_mask_of_a_later_frame_starts_the_segmentation_there(val_sequence, tmp_path):
    from dinosavi.cli.modes import run_segment

    seq, frames_dir, masks_dir = val_sequence
    overrides = ["method=propagate", f"input={frames_dir}", f"first_mask={masks_dir / '00002.png'}",
                 "segment.first_mask_frame=2", "encoder=vit_tiny_random", "propagate.short_side=64",
                 "eval.videos=false", "eval.report=false", "device=cpu"]
    run_segment(compose_config("mode=segment", *overrides), tmp_path, overrides)
    written = sorted((tmp_path / "results" / seq.name).glob("*.png"))
    assert [p.stem for p in written] == seq.frame_names[2:]
    assert np.array_equal(read_palette_png(written[0])[0], read_palette_png(masks_dir / "00002.png")[0])


@pytest.mark.parametrize("changes", [dict(background_mask="every_frame"), dict(fuse=0.5)],
                         ids=["every-frame-background", "fused"])
def test_mode_segment_honours_the_eval_options_of_mode_eval(val_sequence, tiny_synthetic, tmp_path, changes):
    """``mode=segment`` and ``mode=eval`` share one derivation of the CLS backgrounds and the fusion
    (:func:`dinosavi.evaluation.vos.segment_stream`): with each option the PNGs are the same, and the option
    changes them."""
    from dinosavi.data.davis import DavisDataset
    from dinosavi.evaluation.runner import evaluate_slots
    from dinosavi.models.factory import build_model

    seq, frames_dir, _ = val_sequence
    cfg = compose_config("mode=train", "hparam=demo", "encoder=efficientnet_lite0")
    encoder = create_encoder("vit_tiny_random").freeze()
    torch.manual_seed(0)
    model = build_model(cfg.model, encoder.feature_dim).eval()
    source = FeatureSource(encoder, Resolution(ResizeRule(short_side=64, multiple_of=encoder.patch_size)))
    base = EvalOptions(num_bg_slots=2, lock_init="random", overlays=False, videos=False, report=False)
    dataset = DavisDataset(tiny_synthetic, "val")

    def evaluated(eval_options: EvalOptions, name: str) -> np.ndarray:
        evaluate_slots(model, source, dataset, eval_options, tmp_path / name, split="val")
        return np.stack([read_palette_png(p)[0] for p in sorted((tmp_path / name).rglob(f"{seq.name}/*.png"))])

    option = replace(base, **changes)
    (stream_source,) = find_sources(frames_dir)
    stream = stream_frames(stream_source, StreamOptions())
    segmenter = slot_segmenter(model, source, 2, seq.labels[0], stream.size, option, seed=0)
    with ThreadPoolExecutor(2) as pool:
        segment_video(stream, segmenter, tmp_path / "segment", davis_palette(), pool=pool)
    segmented = np.stack([read_palette_png(tmp_path / "segment" / "results" / seq.name / f"{n}.png")[0]
                          for n in seq.frame_names])
    assert np.array_equal(segmented, evaluated(option, "eval"))
    assert not np.array_equal(segmented, evaluated(base, "eval-base"))
