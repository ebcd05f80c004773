"""YouTube-VIS 2019 / 2021 reader: the official JPEG folders and instances JSON, masks decoded with pycocotools.

Layout (the official releases)::

    root/<folder>/JPEGImages/<video>/00000.jpg ...   frames: the JSON's ``file_names``, relative to JPEGImages
    root/<folder>/instances.json                     2021: the annotations of <folder>
    root/<folder>.json                               2019: the same, beside the folder (train.json, valid.json)

The JSON holds ``videos`` (``id``, ``file_names``, ``height``, ``width``) and ``annotations`` (``video_id``,
``iscrowd``, ``segmentations``: one entry per frame, ``null`` where the instance is absent, else compressed
RLE (``counts`` a string), uncompressed RLE (``counts`` a list) or polygons). Masks are decoded with
``pycocotools`` (the ``ytvis`` extra) only when a video is loaded.

Splits (``data.split``):

- ``train``: the videos of ``train/`` except the last ``heldout_videos`` (300) in the JSON's order;
- ``val``: those last ``heldout_videos`` of ``train/``, the held-out split VideoSAUR and SlotContrast score on
  (``data/save_ytvis2021.py`` of both repositories: ``val_ids = all_ids[-300:]``), so ``mode=eval`` scores it
  by default;
- ``train-all``: every video of ``train/``;
- ``valid``, ``test``: the official folders. Their JSON has no ``annotations`` (the official evaluation is a
  server), so their sequences have ``labels=None``: they serve training clips, ``mode=cache`` and, as frame
  folders, ``mode=segment``; scored evaluation on them is an error that says so.

Labels: instances are numbered ``1..K`` in order of first appearance (then in the JSON's order), so the
objects of frame 0 are ``1..K0`` as the DAVIS lock-on protocol expects; 0 is background. Overlapping
instances: a pixel that two or more instances cover is void (255), belonging to none of them. DAVIS scoring
counts void as background; the anchors' protocol (:mod:`dinosavi.evaluation.anchors`) leaves those pixels out,
as VideoSAUR's metrics do with ``ignore_overlaps=True``. Crowd annotations (``iscrowd=1``) are left out, as
VideoSAUR's conversion leaves them out (``getAnnIds(iscrowd=False)``). Frames where no instance is present are
all background.

:class:`YtvisDataset` has the interface of :class:`~dinosavi.data.davis.DavisDataset` and returns the same
:class:`~dinosavi.data.davis.VideoSequence`, so training, evaluation, ``mode=cache`` and ``mode=segment`` run on it
unchanged. torch and pycocotools are imported only when a video is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dinosavi.data.davis import VideoSequence, davis_palette, read_frames

__all__ = ["HELDOUT_VIDEOS", "SPLITS", "VOID", "YtvisDataset", "YtvisVideo", "decode_segmentation",
           "instance_labels"]

HELDOUT_VIDEOS = 300
VOID = 255
# split -> (folder, which videos of its JSON: all, all but the held-out ones, the held-out ones)
SPLITS = {"train": ("train", "fit"), "val": ("train", "heldout"), "train-all": ("train", "all"),
          "valid": ("valid", "all"), "test": ("test", "all")}


@dataclass(frozen=True)
class YtvisVideo:
    """One video of the JSON: its folder name, frame files, size and its instances' per-frame segmentations
    (``None`` per frame where absent)."""

    name: str
    frames: list[Path]
    height: int
    width: int
    instances: list[list[Any]]


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    """One frame of one instance: compressed RLE, uncompressed RLE or polygons -> ``(H, W)`` bool, None when
    the instance is absent (``null``).

    Raises:
        ImportError: pycocotools is not installed (names the extra).
        ValueError: a segmentation of another form, or whose RLE size is not ``(height, width)``.
    """
    if segmentation is None:
        return None
    try:
        from pycocotools import mask as coco_mask
    except ImportError as e:
        raise ImportError("YouTube-VIS masks are RLE/polygons decoded with pycocotools: "
                          "pip install 'dinosavi[ytvis]' (or pip install pycocotools)") from e
    if isinstance(segmentation, list):  # polygons: one instance may have several parts
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if [int(s) for s in segmentation["size"]] != [height, width]:
            raise ValueError(f"RLE of size {segmentation['size']}; the video is {[height, width]} (H, W)")
        rle = (coco_mask.frPyObjects(segmentation, height, width) if isinstance(segmentation["counts"], list)
               else segmentation)
    else:
        raise ValueError(f"expected null, an RLE dict (counts, size) or a list of polygons, got "
                         f"{type(segmentation).__name__}")
    return np.asarray(coco_mask.decode(rle), dtype=bool)


def instance_labels(masks: list[list[np.ndarray | None]], num_frames: int, height: int, width: int) -> np.ndarray:
    """Per-frame instance masks -> one id map per frame.

    Args:
        masks: per instance, ``num_frames`` ``(H, W)`` bool masks or None (absent); instances in the JSON's order.
        num_frames: T.
        height: H.
        width: W.

    Returns:
        ``(T, H, W)`` uint8: instances numbered ``1..K`` by first appearance (ties: the JSON's order), 0
        background, :data:`VOID` where two or more instances overlap.

    Raises:
        ValueError: more than 254 instances.
    """
    first = [next((t for t, m in enumerate(ms) if m is not None and m.any()), num_frames) for ms in masks]
    order = sorted(range(len(masks)), key=lambda k: (first[k], k))
    if len(order) >= VOID:
        raise ValueError(f"{len(order)} instances; a label map holds ids 1..{VOID - 1}")
    labels = np.zeros((num_frames, height, width), np.uint8)
    count = np.zeros((num_frames, height, width), np.uint8)
    for new_id, k in enumerate(order, start=1):
        for t, mask in enumerate(masks[k]):
            if mask is not None:
                labels[t][mask] = new_id
                count[t] += mask
    labels[count > 1] = VOID
    return labels


def _annotation_file(root: Path, folder: str) -> Path:
    for candidate in (root / folder / "instances.json", root / f"{folder}.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"YouTube-VIS annotations of `{folder}` not found: expected "
                            f"{root / folder / 'instances.json'} (2021) or {root / f'{folder}.json'} (2019)")


class YtvisDataset:
    """Whole YouTube-VIS videos with their instance ids (where the split has masks), indexable like a torch
    ``Dataset``.

    The JSON is read and checked at construction (every video has frames, a size, one segmentation per frame
    for each instance); frames and masks are decoded when a video is loaded.

    Args:
        root: Folder holding ``train/``, ``valid/`` (and ``test/``) with ``JPEGImages`` and the instances JSON.
        split: One of :data:`SPLITS`.
        heldout_videos: The last videos of ``train/`` held out as ``val`` (VideoSAUR's and SlotContrast's 300).
        annotations: False reads frames only (training clips, caching), even where masks exist.

    Attributes:
        has_masks: Whether the split's JSON has ``annotations`` (``valid``/``test`` have none).

    Raises:
        ValueError: An unknown split, an empty split, a malformed JSON entry (names the file and the video).
        FileNotFoundError: The JSON or a video's frame folder is missing.
    """

    def __init__(self, root: str | Path, split: str = "val", heldout_videos: int = HELDOUT_VIDEOS,
                 annotations: bool = True) -> None:
        if split not in SPLITS:
            raise ValueError(f"Unknown YouTube-VIS split `{split}`; expected one of {list(SPLITS)}")
        if heldout_videos < 0:
            raise ValueError(f"data.heldout_videos must be >= 0, got {heldout_videos}")
        self.root, self.split = Path(root), split
        folder, part = SPLITS[split]
        self.json_path = _annotation_file(self.root, folder)
        self.frame_root = self.root / folder / "JPEGImages"
        data = json.loads(self.json_path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
            raise ValueError(f"{self.json_path} is not a YouTube-VIS instances JSON (no `videos` list)")
        videos = data["videos"]
        if part == "fit":
            videos = videos[: len(videos) - heldout_videos]
        elif part == "heldout":
            videos = videos[len(videos) - min(heldout_videos, len(videos)):]
        if not videos:
            raise ValueError(f"YouTube-VIS split `{split}` of {self.json_path} has no videos "
                             f"({len(data['videos'])} in the file, data.heldout_videos={heldout_videos})")
        self.has_masks = data.get("annotations") is not None
        self.annotations = annotations and self.has_masks
        by_video: dict[Any, list[dict[str, Any]]] = {}
        for ann in data.get("annotations") or []:
            if not ann.get("iscrowd", 0):
                by_video.setdefault(ann["video_id"], []).append(ann)
        self._videos = {v.name: v for v in (self._video(entry, by_video.get(entry.get("id"), [])) for entry in videos)}
        self.sequence_names: list[str] = list(self._videos)

    def _video(self, entry: dict[str, Any], anns: list[dict[str, Any]]) -> YtvisVideo:
        where = f"{self.json_path}, video id {entry.get('id')}"
        names = entry.get("file_names")
        if not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{where}: expected a non-empty `file_names` list of frame paths")
        if "height" not in entry or "width" not in entry:
            raise ValueError(f"{where}: expected `height` and `width`")
        frames = [self.frame_root / n for n in names]
        if not frames[0].parent.is_dir():
            raise FileNotFoundError(f"Frame folder not found: {frames[0].parent} ({where})")
        instances = []
        for ann in anns:
            segs = ann.get("segmentations")
            if not isinstance(segs, list) or len(segs) != len(frames):
                raise ValueError(f"{where}: annotation {ann.get('id')} has "
                                 f"{len(segs) if isinstance(segs, list) else 'no'} segmentations for "
                                 f"{len(frames)} frames; expected one per frame (null where absent)")
            instances.append(segs)
        return YtvisVideo(frames[0].parent.name, frames, int(entry["height"]), int(entry["width"]), instances)

    def __len__(self) -> int:
        return len(self.sequence_names)

    def __getitem__(self, index: int) -> VideoSequence:
        return self.load(self.sequence_names[index])

    def video(self, name: str) -> YtvisVideo:
        """The JSON's entry of video ``name``.

        Raises:
            KeyError: ``name`` is not a video of this split.
        """
        if name not in self._videos:
            raise KeyError(f"Unknown YouTube-VIS video {name!r} in split `{self.split}` of {self.json_path}")
        return self._videos[name]

    def frame_paths(self, name: str) -> list[Path]:
        """The frame files of video ``name``, in the JSON's order."""
        return list(self.video(name).frames)

    def load(self, name: str) -> VideoSequence:
        """Read every frame of video ``name`` and, where the split has masks, its instance ids.

        Returns:
            The sequence: ``frames`` (T, 3, H, W) uint8, ``labels`` (T, H, W) int64 (see the module docstring)
            or None without masks, the DAVIS palette and the frames' stems.

        Raises:
            KeyError: ``name`` is not a video of this split.
            ValueError: A corrupt frame, frames of another size than the JSON's, a bad segmentation (each names
                the file and the video).
        """
        import torch

        video = self.video(name)
        frames = read_frames(video.frames)  # (T, 3, H, W)
        if tuple(frames.shape[-2:]) != (video.height, video.width):
            raise ValueError(f"Frames of {name!r} ({video.frames[0]}) are {frames.shape[-1]}x{frames.shape[-2]} "
                             f"(WxH); {self.json_path} says {video.width}x{video.height}")
        stems = [p.stem for p in video.frames]
        if not self.annotations:
            return VideoSequence(name, frames, None, davis_palette(), stems)
        masks = []
        for k, segs in enumerate(video.instances):
            try:
                masks.append([decode_segmentation(s, video.height, video.width) for s in segs])
            except ValueError as e:
                raise ValueError(f"{self.json_path}, video {name!r}, instance {k}: {e}") from e
        labels = instance_labels(masks, len(frames), video.height, video.width)
        return VideoSequence(name, frames, torch.from_numpy(labels).long(), davis_palette(), stems)
