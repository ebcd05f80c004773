"""A tiny YouTube-VIS-format folder written by the tests: moving rectangles, their instance JSON in every
segmentation form (compressed RLE, uncompressed RLE, polygons, ``null``), an overlap, a video without instances
and an official-style ``valid/`` split without annotations; and the id maps the reader must return."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

H, W = 24, 40


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of an (H, W) bool mask: run lengths in column-major order, starting with zeros."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": [H, W], "counts": counts}


def _compressed_rle(mask: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def _box(y: int, x: int, h: int, w: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y : y + h, x : x + w] = True
    return mask


def _polygon(y: int, x: int, h: int, w: int) -> list[list[float]]:
    """A rectangle covering the pixels ``[y, y+h) x [x, x+w)`` as a COCO polygon (pixel-corner coordinates)."""
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _frames(num_frames: int, boxes: list[list[np.ndarray | None]], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.broadcast_to(rng.integers(0, 236, 3, dtype=np.uint8), (num_frames, H, W, 3)).copy()
    frames += rng.integers(0, 20, frames.shape, dtype=np.uint8)  # texture
    for masks in boxes:
        colour = rng.integers(0, 256, 3, dtype=np.uint8)
        for t, m in enumerate(masks):
            if m is not None:
                frames[t][m] = colour
    return frames


def write_ytvis(root: Path) -> dict[str, np.ndarray]:
    """Write ``root/train`` (3 videos) and ``root/valid`` (1 video, no annotations); returns the (T, H, W) ids
    the reader must give each train video (instances by first appearance, 255 where two overlap)."""
    # video "a": 8 frames; instance A (compressed RLE) everywhere, instance B (uncompressed RLE) absent in frames 0-1
    a_first = [_box(4, 2 + t, 8, 8) for t in range(8)]
    a_second: list[np.ndarray | None] = [None, None] + [_box(12, 24 - t, 6, 10) for t in range(6)]
    # video "b": 7 frames; instance C (polygons) appears at frame 1, instance D (compressed RLE) overlaps it
    b_first: list[np.ndarray | None] = [None] + [_box(6, 4 + 2 * t, 10, 12) for t in range(6)]
    b_second = [_box(10, 14, 8, 10) for _ in range(7)]
    # video "c": 6 frames, no instance at all
    videos = {"a": (8, [a_first, a_second]), "b": (7, [b_first, b_second]), "c": (6, [])}
    # the JSON lists b's instances as (C, D); D appears in frame 0, C in frame 1, so D is id 1 and C id 2
    expected = {}
    json_videos, annotations = [], []
    for vid, (name, (num_frames, instances)) in enumerate(videos.items(), start=1):
        folder = root / "train" / "JPEGImages" / name
        folder.mkdir(parents=True)
        frames = _frames(num_frames, instances, vid)
        names = []
        for t, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"{5 * t:05d}.jpg", quality=95)
            names.append(f"{name}/{5 * t:05d}.jpg")
        json_videos.append({"id": vid, "file_names": names, "height": H, "width": W, "length": num_frames})
        labels = np.zeros((num_frames, H, W), np.uint8)
        count = np.zeros((num_frames, H, W), np.uint8)
        firsts = [next(t for t, m in enumerate(ms) if m is not None) for ms in instances]
        for new_id, k in enumerate(sorted(range(len(instances)), key=lambda k: (firsts[k], k)), start=1):
            for t, m in enumerate(instances[k]):
                if m is not None:
                    labels[t][m] = new_id
                    count[t] += m
        labels[count > 1] = 255
        expected[name] = labels
    encoders = {("a", 0): "compressed", ("a", 1): "uncompressed", ("b", 0): "polygon", ("b", 1): "compressed"}
    ann_id = 1
    for vid, (name, (_, instances)) in enumerate(videos.items(), start=1):
        for k, masks in enumerate(instances):
            form = encoders[(name, k)]
            segs = []
            for m in masks:
                if m is None:
                    segs.append(None)
                elif form == "compressed":
                    segs.append(_compressed_rle(m))
                elif form == "uncompressed":
                    segs.append(_uncompressed_rle(m))
                else:
                    ys, xs = np.nonzero(m)
                    segs.append(_polygon(int(ys.min()), int(xs.min()), int(np.ptp(ys)) + 1, int(np.ptp(xs)) + 1))
            annotations.append({"id": ann_id, "video_id": vid, "category_id": 1, "iscrowd": 0, "segmentations": segs,
                                "height": H, "width": W})
            ann_id += 1
    # a crowd annotation is left out
    annotations.append({"id": ann_id, "video_id": 3, "category_id": 1, "iscrowd": 1,
                        "segmentations": [_compressed_rle(_box(0, 0, 4, 4))] * 6, "height": H, "width": W})
    meta = {"info": {}, "licenses": [], "categories": [{"id": 1, "name": "box", "supercategory": "shape"}]}
    (root / "train" / "instances.json").write_text(json.dumps({**meta, "videos": json_videos,
                                                               "annotations": annotations}))
    folder = root / "valid" / "JPEGImages" / "v"
    folder.mkdir(parents=True)
    names = []
    for t, frame in enumerate(_frames(6, [], 9)):
        Image.fromarray(frame).save(folder / f"{5 * t:05d}.jpg")
        names.append(f"v/{5 * t:05d}.jpg")
    (root / "valid" / "instances.json").write_text(json.dumps(
        {**meta, "videos": [{"id": 1, "file_names": names, "height": H, "width": W, "length": 6}],
         "annotations": None}))
    return expected
