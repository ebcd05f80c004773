"""The anchors' protocol: score a slot model on YouTube-VIS (or any annotated set) the way VideoSAUR
(NeurIPS 2023) and SlotContrast (CVPR 2025) do, so a number can sit in their table (``eval=videosaur``,
``eval=slotcontrast``).

What their code does (martius-lab/videosaur at 5d09311ba862898eedf28976990ce0a012ac69b7,
martius-lab/slotcontrast at 17b42b05eba7713f14af3231a6899477af34fdee; their data, transform, pipeline and
metric code is identical, only the YouTube-VIS configs differ):

- **Data** (``data/save_ytvis2021.py``, both): the videos of ``train/instances.json``; the last 300 in the
  file's order are the evaluation split (``val_ids = all_ids[-300:]``; our ``data.split=val``). Frames and
  instance masks are resized so the short side is 320 with ``nearest-exact`` (the data README runs it with
  ``--resize``; ``Resize(..., short_side_scale=True)`` floors the long side).
- **Resolution** (``data/transforms.py``, ``crop_type: central``): a centred square crop of the short side
  (``CenterFullCropVideo``, torchvision's rounding), then frames ``bicubic`` (clamped) and masks
  ``nearest-exact`` to ``input_size`` x ``input_size``. VideoSAUR (``configs/videosaur/ytvis.yml``, DINO
  ViT-B/16): 224 for both. SlotContrast (``configs/slotcontrast/ytvis2021.yaml``, DINOv2 ViT-B/14): 518 for
  both. The models' masks are resized ``bilinear`` to the mask size and arg-maxed over slots
  (``models.py::process_masks``): here :func:`dinosavi.evaluation.vos.segment_stream` does the same.
- **Frame sampling** (``data/pipelines.py::split_to_chunks``): VideoSAUR's ``val_pipeline`` has
  ``use_chunks: true, chunk_size: 6``: every video is cut into consecutive 6-frame clips, the remainder (and
  a video shorter than 6 frames) dropped, and each clip is one sample the model sees from fresh slots.
  SlotContrast's has ``use_chunks: false``: each whole video is one sample (``val_batch_size: 1``).
- **Metrics** (``metrics.py``; :mod:`dinosavi.metrics.videosaur`): video FG-ARI and video mBO per sample
  (``VideoARI``, ``VideoIoU`` with ``matching: overlap``), image FG-ARI and mBO per frame (``ImageARI``,
  ``ImageIoU``), averaged over every sample (frame) of the split. Background is no instance (their YouTube-VIS
  masks have no background channel), so FG-ARI scores instance pixels only and mBO scores instances only;
  samples (frames) without any instance are skipped.

Where the two differ there is one named choice each (:data:`ANCHOR_PROTOCOLS`): ``videosaur`` (6-frame
clips, 224) and ``slotcontrast`` (whole videos, 518).

What is ours, and what the code leaves open:

- The model's frames are the cropped frames resized bicubic to ``input_size`` as uint8 (the anchors keep
  floats: at most half a grey level apart) and encoded as they are (``eval.short_side`` is not used; a ViT
  drops a remainder past a multiple of its patch). Features are encoded online, never read from the feature
  store, whose keys do not know the crop.
- Overlapping instances are void in :class:`dinosavi.data.ytvis.YtvisDataset` and left out of both metrics;
  the anchors' configs keep ``ignore_overlaps: false``, which would stop with an error on an overlap.
- SlotContrast's config reads shards named ``ytvis2021/`` where the data README writes
  ``ytvis2021_resized/`` (320) and VideoSAUR's DINOv2 config asks for a 518 version: which pre-resize its
  numbers used the code does not say. ``slotcontrast`` crops the native frames (no pre-resize).
- Slots bind freely (``eval.lock_on=false``); how slots are read out and whether a per-frame model is tracked
  follow ``eval.output`` and ``eval.track_mode`` (defaults: decoder alpha masks, ``auto``). Each sample draws
  its slots from a generator seeded with ``seed``.

Outputs under ``out_dir``: ``results/<video>/<frame>.png`` (palette PNGs of the predicted segments at the mask
size, for the frames scored), ``anchor-<protocol>-<split>.json`` (per video and global, full precision) and
``anchor-<protocol>-<split>.csv`` (per video, 3 decimals). A failed run removes what it wrote.

Shapes: ``T`` frames, ``H, W`` pixels, ``S`` slots.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dinosavi.atomic import remove_on_failure, write_atomic
from dinosavi.data.davis import SequenceDataset, VideoSequence
from dinosavi.data.png import write_palette_png
from dinosavi.encoders.base import ResizeRule
from dinosavi.evaluation.options import EvalOptions
from dinosavi.evaluation.vos import collect, segment_stream
from dinosavi.features.source import FeatureSource
from dinosavi.features.space import Resolution
from dinosavi.metrics.results import ANCHOR_METRICS, AnchorTable
from dinosavi.metrics.videosaur import anchor_sample
from dinosavi.models.slot_model import SlotModel

__all__ = ["ANCHOR_PROTOCOLS", "AnchorProtocol", "anchor_view", "evaluate_anchor", "samples"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnchorProtocol:
    """How one paper's code scores a video set.

    Attributes:
        name: the ``eval.protocol`` that selects it.
        chunk_frames: frames per sample (consecutive clips, remainder dropped); None: the whole video.
        pre_short_side: the stored data's short side (``nearest-exact``, long side floored); None: native.
        input_size: the side of the square the centred crop is resized to for the encoder (bicubic).
        mask_size: the side of the square masks and predictions are scored at (``nearest-exact``).
        source: where this comes from (repository, commit, config).
    """

    name: str
    chunk_frames: int | None
    pre_short_side: int | None
    input_size: int
    mask_size: int
    source: str


ANCHOR_PROTOCOLS = {
    "videosaur": AnchorProtocol("videosaur", 6, 320, 224, 224,
                                "martius-lab/videosaur@5d09311 configs/videosaur/ytvis.yml"),
    "slotcontrast": AnchorProtocol("slotcontrast", None, None, 518, 518,
                                   "martius-lab/slotcontrast@17b42b0 configs/slotcontrast/ytvis2021.yaml"),
}


def _short_side(x: Tensor, size: int, mode: str) -> Tensor:
    """``(T, C, H, W)`` float -> short side ``size``, the long side floored (VideoSAUR's ``scale_short_side``)."""
    h, w = x.shape[-2:]
    target = (math.floor(h / w * size), size) if w < h else (size, math.floor(w / h * size))
    return x if target == (h, w) else F.interpolate(x, size=target, mode=mode)


def _centre_square(x: Tensor) -> Tensor:
    """The centred square of the short side, rounded as torchvision's ``center_crop``."""
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = round((h - side) / 2.0), round((w - side) / 2.0)  # Python's round, as torchvision
    return x[..., top : top + side, left : left + side]


def anchor_view(seq: VideoSequence, protocol: AnchorProtocol) -> VideoSequence:
    """The sequence as the protocol's model and metrics see it.

    Args:
        seq: frames ``(T, 3, H, W)`` uint8 and labels ``(T, H, W)`` (0 background, 255 void).
        protocol: the resolution to reproduce.

    Returns:
        frames ``(T, 3, s, s)`` uint8 with ``s = input_size`` and labels ``(T, m, m)`` int64 with
        ``m = mask_size``.
    """
    assert seq.labels is not None
    frames, labels = seq.frames.float(), seq.labels[:, None].float()
    if protocol.pre_short_side is not None:
        frames = _short_side(frames, protocol.pre_short_side, "nearest-exact")
        labels = _short_side(labels, protocol.pre_short_side, "nearest-exact")
    frames, labels = _centre_square(frames), _centre_square(labels)
    size = protocol.input_size
    if tuple(frames.shape[-2:]) != (size, size):
        frames = F.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False)
    if tuple(labels.shape[-2:]) != (protocol.mask_size,) * 2:
        labels = F.interpolate(labels, size=(protocol.mask_size,) * 2, mode="nearest-exact")
    return replace(seq, frames=frames.clamp(0, 255).round().to(torch.uint8), labels=labels[:, 0].long())


def samples(num_frames: int, chunk_frames: int | None) -> list[range]:
    """The frames of each sample: consecutive ``chunk_frames``-frame clips, remainder dropped, or the whole
    video when ``chunk_frames`` is None."""
    if chunk_frames is None:
        return [range(num_frames)]
    return [range(s, s + chunk_frames) for s in range(0, num_frames - chunk_frames + 1, chunk_frames)]


def evaluate_anchor(
    model: SlotModel,
    encoder_source: FeatureSource,
    dataset: SequenceDataset,
    protocol: AnchorProtocol,
    options: EvalOptions,
    out_dir: Path,
    *,
    split: str,
    name: str = "model",
    seed: int = 0,
) -> dict[str, float]:
    """Score a slot model under an anchor's protocol (see the module docstring).

    Args:
        model: the slot model, in eval mode, on the encoder's device.
        encoder_source: gives the encoder and its batch size; its resolution and store are not used.
        dataset: annotated sequences (their labels: 0 background, 1..254 instances, 255 void).
        protocol: one of :data:`ANCHOR_PROTOCOLS`.
        options: read-out and tracking (``output``, ``track_mode``, ``num_slots``, ``num_iters``...); binding is
            always free (``lock_on=False``).
        out_dir: where the PNGs, the JSON and the CSV go.
        split: the split's name (in the file names).
        name: what the files call the model.
        seed: the seed of every sample's slot initialisation.

    Returns:
        ``FG-ARI``, ``mBO`` (video), ``FG-ARI-frame``, ``mBO-frame`` (image), over the split.

    Raises:
        ValueError: ``eval.background_mask=every_frame`` (not part of the protocol), or a split whose samples
            hold no instance at all.
    """
    if options.every_frame_background:
        raise ValueError(f"eval.protocol={protocol.name} binds slots freely; eval.background_mask=every_frame is a "
                         f"lock-on option of eval=original")
    options = replace(options, lock_on=False, num_extra_slots=0)
    source = FeatureSource(encoder_source.encoder, Resolution(ResizeRule()), encoder_source.batch_size)
    log.info("evaluating %s under %s's protocol (%s) on %s: %d videos", name, protocol.name, protocol.source, split,
             len(dataset))
    table, skipped = AnchorTable(), []
    out_dir = Path(out_dir)
    with remove_on_failure(out_dir):
        for index in range(len(dataset)):
            seq = dataset[index]
            if seq.labels is None:
                raise ValueError(f"video {seq.name!r} has no masks; the anchors' protocol scores annotated videos")
            view = anchor_view(seq, protocol)
            assert view.labels is not None
            chunks = samples(len(view.frames), protocol.chunk_frames)
            if not chunks:
                skipped.append(seq.name)
                continue
            folder = out_dir / "results" / seq.name
            folder.mkdir(parents=True, exist_ok=True)
            for frames in chunks:
                predicted = _segment(model, source, view.frames[frames.start : frames.stop], protocol.mask_size,
                                     options, seed)
                scores = anchor_sample(view.labels[frames.start : frames.stop], predicted)
                table.add(seq.name, scores.fg_ari, scores.mbo, scores.frame_fg_ari, scores.frame_mbo)
                for t, labels in zip(frames, predicted.numpy().astype(np.uint8)):
                    write_palette_png(folder / f"{view.frame_names[t]}.png", labels, seq.palette)
        if not table.samples:
            raise ValueError(f"no video of {split} has a {protocol.chunk_frames}-frame sample to score "
                             f"(eval.protocol={protocol.name})")
        means = table.global_means()
        if all(math.isnan(v) for v in means.values()):
            raise ValueError(f"no sample of {split} holds an instance; nothing to score")
        _write(table, skipped, out_dir, protocol, split, name)
    counts = table.counts()
    print(f"{protocol.name} protocol on {split}: " + ", ".join(f"{k} {means[k]:.3f}" for k in ANCHOR_METRICS)
          + f" ({counts['scored_samples']} samples of {counts['videos']} videos)")
    return means


def _segment(model: SlotModel, source: FeatureSource, frames: Tensor, mask_size: int, options: EvalOptions,
             seed: int) -> Tensor:
    """One sample, from fresh slots: ``(T, 3, s, s)`` uint8 -> ``(T, m, m)`` predicted segment ids, the slots'
    masks resized bilinear to ``m = mask_size`` and arg-maxed."""
    result = collect(segment_stream(model, source.frames(frames), None, options, size=(mask_size, mask_size),
                                    patch_size=source.encoder.patch_size, seed=seed))
    return result.labels


def _write(table: AnchorTable, skipped: list[str], out_dir: Path, protocol: AnchorProtocol, split: str,
           name: str) -> None:
    """``anchor-<protocol>-<split>.json`` (every value, full precision) and ``.csv`` (per video, 3 decimals)."""
    stem = out_dir / f"anchor-{protocol.name}-{split}"
    per_video = {v: table.video_means(v) for v in table.samples}
    payload = {"model": name, "protocol": protocol.name, "source": protocol.source, "split": split,
               "chunk_frames": protocol.chunk_frames, "pre_short_side": protocol.pre_short_side,
               "input_size": protocol.input_size, "mask_size": protocol.mask_size,
               "global": table.global_means(), "counts": table.counts(), "skipped_videos": skipped,
               "per_video": per_video, "samples": table.samples}
    write_atomic(stem.with_suffix(".json"), json.dumps(payload, indent=2, allow_nan=True) + "\n")
    rows = ["video," + ",".join(ANCHOR_METRICS)]
    rows += [f"{v}," + ",".join(f"{s[m]:.3f}" for m in ANCHOR_METRICS) for v, s in per_video.items()]
    write_atomic(stem.with_suffix(".csv"), "\n".join(rows) + "\n")
