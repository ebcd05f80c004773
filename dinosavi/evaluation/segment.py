"""``mode=segment``: segment your own videos with a slot model or by label propagation, frame by frame.

Methods (``method=``):

- ``slots`` (``resume=<checkpoint>``; the model and encoder are the checkpoint's): unsupervised by
  default, every slot a segment, tracked so that its colour stays stable
  (:func:`dinosavi.evaluation.vos.segment_frames`, the model's one time loop); with
  ``first_mask=<palette PNG>``, lock-on from that mask. ``eval.*`` sets the rest, as in ``mode=eval``.
- ``propagate`` (``first_mask`` needed, any ``encoder=``): label propagation of the mask
  (:func:`dinosavi.evaluation.propagate.propagate_frames`), settings from ``propagate.*``.

Output layout under ``out_dir``, per video ``<name>`` (:func:`dinosavi.data.inputs.find_sources`), the layout
of ``mode=eval`` and ``mode=propagate``, so ``mode=score results=<run dir>`` scores it like theirs::

    results/<name>/<frame>.png     palette PNGs, pixel = segment or object id
    overlays/<name>/<frame>.jpg    the predictions blended over the frames
    slots/<name>/<frame>.jpg       (slots) the frame, then each slot's mask on it (stretched), in track order
    soft/<name>/<frame>.jpg        (propagate) the frame, then each class's soft label (background first)
    videos/<name>.mp4              the overlays at the stream's frame rate (the source's, or segment.max_fps)
    report.html                    every video: table, player, thumbnails; opens offline

Memory is bounded: frames are decoded and encoded ``segment.chunk_frames`` at a time and handed to the
model as a generator; each frame's outputs are written (on two threads) as soon as its labels exist, and
the MP4 is encoded as the overlays come. Nothing holds the whole video. A failed run removes what it wrote.

Shapes: ``S`` slots, ``K`` classes, ``H, W`` pixels, ``h, w`` feature grid.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text
from torch import Tensor

from dinosavi.atomic import remove_on_failure
from dinosavi.data.davis import read_palette_png, write_palette_png
from dinosavi.data.inputs import FrameStream, VideoSource
from dinosavi.evaluation.options import METHODS, EvalOptions, PropagationParams
from dinosavi.evaluation.propagate import DINO, propagate_frames
from dinosavi.evaluation.vos import segment_stream
from dinosavi.features.source import FeatureSource
from dinosavi.models.slot_model import SlotModel
from dinosavi.viz.outputs import save_jpeg
from dinosavi.viz.overlay import mask_grid, overlay, stretch_maps
from dinosavi.viz.report import VideoEntry, jpeg_data_uri, spread, write_video_report
from dinosavi.viz.video import write_video

__all__ = ["METHODS", "Segmenter", "first_frame", "propagation_segmenter", "read_first_mask", "segment_inputs",
           "segment_video", "slot_segmenter"]

log = logging.getLogger(__name__)

MAP_HEIGHT = 160  # pixels of each tile of the slot maps
THUMBNAILS = 4
WRITERS = 2  # writer threads; at most twice as many frames wait to be written

# frames (3, H, W) uint8 in, per frame the labels (H, W) int64 and maps (M, h, w) in [0, 1] out, lazily
Segmenter = Callable[[Iterator[Tensor]], Iterator[tuple[Tensor, Tensor]]]


def slot_segmenter(
    model: SlotModel,
    source: FeatureSource,
    chunk: int,
    first_labels: Tensor | None,
    size: tuple[int, int],
    options: EvalOptions,
    seed: int,
    propagation: PropagationParams = DINO,
) -> Segmenter:
    """A slot model's segmenter: lock-on from ``first_labels`` ``(H, W)`` when ``options.lock_on``, else every
    slot a segment (slot counts, iterations, output, tracking, CLS backgrounds and the fusion with
    ``propagation`` from ``options``, as in ``mode=eval``: :func:`dinosavi.evaluation.vos.segment_stream`)."""
    def run(frames: Iterator[Tensor]) -> Iterator[tuple[Tensor, Tensor]]:
        steps = segment_stream(model, source.stream(frames, chunk), first_labels, options, size=size,
                               patch_size=source.encoder.patch_size, seed=seed, propagation=propagation)
        for step in steps:
            yield step.labels, step.masks

    return run


def propagation_segmenter(source: FeatureSource, chunk: int, first_labels: Tensor,
                          params: PropagationParams) -> Segmenter:
    """Label propagation of ``first_labels`` ``(H, W)``; the maps are the ``(K, h, w)`` soft labels."""

    def run(frames: Iterator[Tensor]) -> Iterator[tuple[Tensor, Tensor]]:
        features = (f for f, _ in source.stream(frames, chunk))
        for step in propagate_frames(features, first_labels, source.encoder.patch_size, params):
            yield step.labels, step.soft

    return run


@dataclass
class _Written:
    """What the writer threads hand back for one frame: the overlay (for the MP4) and report images."""

    overlay: np.ndarray
    thumbnail: str | None
    maps: str | None


def _thumbnail(image: np.ndarray, height: int = 96) -> str:
    pil = Image.fromarray(image)
    width = max(1, round(pil.width * height / pil.height))
    return jpeg_data_uri(np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR)))


def _write_frame(
    folders: dict[str, Path], maps_folder: str, name: str, frame: np.ndarray, labels: np.ndarray, maps: Tensor,
    palette: np.ndarray, overlays: bool, thumbnail: bool, report_maps: bool,
) -> _Written:
    """Write one frame's PNG, overlay JPEG and map JPEG into ``folders`` (by kind); returns its overlay and
    report images."""
    write_palette_png(folders["results"] / f"{name}.png", labels, palette)
    image = overlay(frame, labels, palette)
    if overlays:
        save_jpeg(folders["overlays"] / f"{name}.jpg", image, quality=90)
    tile = torch.from_numpy(frame).permute(2, 0, 1)
    if tile.shape[1] > MAP_HEIGHT:  # small tiles: a slot map is S + 1 frames wide
        width = max(1, round(tile.shape[2] * MAP_HEIGHT / tile.shape[1]))
        small = Image.fromarray(frame).resize((width, MAP_HEIGHT), Image.Resampling.BILINEAR)
        tile = torch.from_numpy(np.array(small)).permute(2, 0, 1)
    grid = mask_grid(tile, stretch_maps(maps)).permute(1, 2, 0).numpy()  # a weak model's maps visible
    save_jpeg(folders[maps_folder] / f"{name}.jpg", grid)
    return _Written(image, _thumbnail(image) if thumbnail else None, jpeg_data_uri(grid) if report_maps else None)


class _FramesPerSecond(ProgressColumn):
    """The progress bar's rate since the start, in frames per second (frames come in chunks, so a rate over
    the last few updates would jump)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        return Text(f"{task.completed / elapsed:.2f} frames/s" if elapsed and task.completed else "")


class _FrameWriter:
    """Writes a video's frames on the writer threads as their labels come, in order, and collects the
    report's images; :meth:`drain` hands back the overlays of finished frames (for the MP4)."""

    def __init__(self, folders: dict[str, Path], maps_folder: str, palette: np.ndarray, overlays: bool,
                 marks: set[int], pool: ThreadPoolExecutor) -> None:
        self.folders, self.maps_folder, self.palette = folders, maps_folder, palette
        self.overlays, self.pool = overlays, pool
        self.marks, self.middle = marks, sorted(marks)[len(marks) // 2]
        self.pending: deque[Future[_Written]] = deque()
        self.thumbnails: list[str] = []
        self.maps: list[str] = []
        self.last: np.ndarray | None = None
        self.count = 0

    def submit(self, name: str, frame: np.ndarray, ids: np.ndarray, maps: Tensor) -> None:
        """Queue the next frame's files: ``frame`` ``(H, W, 3)`` uint8, ``ids`` ``(H, W)`` uint8 and ``maps``
        ``(M, h, w)``."""
        index = self.count
        self.pending.append(self.pool.submit(
            _write_frame, self.folders, self.maps_folder, name, frame, ids, maps, self.palette, self.overlays,
            index in self.marks, index == self.middle))
        self.count += 1

    def drain(self, keep: int) -> Iterator[np.ndarray]:
        """The overlays of the oldest frames until at most ``keep`` wait to be written."""
        while len(self.pending) > keep:
            out = self.pending.popleft().result()
            if out.thumbnail is not None:
                self.thumbnails.append(out.thumbnail)
            if out.maps is not None:
                self.maps.append(out.maps)
            self.last = out.overlay
            yield out.overlay


def _written(stream: FrameStream, segmenter: Segmenter, writer: _FrameWriter, progress: Progress | None,
             task: TaskID | None) -> Iterator[np.ndarray]:
    """Pull the stream's frames through the segmenter, queue each frame's files and yield the overlays of
    the written frames, in order.

    Raises:
        ValueError: labels above 255, or no frame at all.
    """
    waiting: deque[tuple[str, np.ndarray]] = deque()  # decoded frames whose labels are not out yet

    def pull() -> Iterator[Tensor]:
        for frame_name, frame in stream.frames:
            waiting.append((frame_name, frame))
            yield torch.from_numpy(frame).permute(2, 0, 1)

    for labels, frame_maps in segmenter(pull()):
        frame_name, frame = waiting.popleft()
        ids = labels.numpy()
        if ids.max() > 255:
            raise ValueError(f"{stream.source.name}: segment id {int(ids.max())} does not fit a palette PNG; use at "
                             "most 255 slots (eval.num_slots)")
        writer.submit(frame_name, frame, ids.astype(np.uint8), frame_maps)
        if progress is not None and task is not None:
            progress.advance(task)
        yield from writer.drain(2 * WRITERS)
    yield from writer.drain(0)
    if writer.count == 0:
        raise ValueError(f"{stream.source.path}: no frames to segment (segment.start / segment.stop select "
                         f"none; the stream has about {stream.length})")


def segment_video(
    stream: FrameStream,
    segmenter: Segmenter,
    out_dir: Path,
    palette: np.ndarray,
    *,
    maps_folder: str = "slots",
    overlays: bool = True,
    video: bool = True,
    pool: ThreadPoolExecutor,
    progress: Progress | None = None,
) -> VideoEntry:
    """Segment one video and write its outputs under ``out_dir`` (``results/<name>/``, ``overlays/<name>/``,
    ``<maps_folder>/<name>/``, ``videos/<name>.mp4``) as frames come.

    Frames are pulled from ``stream`` only as the segmenter asks for them; at most a chunk of frames waits
    for its labels, at most ``2 x WRITERS`` to be written.

    Args:
        stream: the frames (:func:`dinosavi.data.inputs.stream_frames`).
        segmenter: frames in, labels and maps out (:func:`slot_segmenter`, :func:`propagation_segmenter`).
        out_dir: the run's output folder.
        palette: ``(256, 3)`` uint8 colours of the ids.
        maps_folder: the folder of the map JPEGs (``slots`` or ``soft``).
        overlays: write the overlay JPEGs (the MP4 is made from overlays either way).
        video: write ``<name>.mp4``.
        pool: the writer threads.
        progress: a progress bar to advance, frame by frame.

    Returns:
        The video's report entry.

    Raises:
        ValueError: the stream yields no frame (e.g. ``segment.start`` past the end), or labels above 255.
    """
    name = stream.source.name
    folders = {kind: out_dir / kind / name for kind in ("results", maps_folder, *(("overlays",) if overlays else ()))}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    marks = set(spread(stream.length, THUMBNAILS)) if stream.length else {0}
    writer = _FrameWriter(folders, maps_folder, palette, overlays, marks, pool)
    task = None if progress is None else progress.add_task(name, total=stream.length or None)
    t0 = time.perf_counter()
    mp4 = out_dir / "videos" / f"{name}.mp4"
    written = _written(stream, segmenter, writer, progress, task)
    if video:
        write_video(mp4, written, stream.rate)
    else:
        deque(written, maxlen=0)  # write the frames; no MP4
    seconds, count = time.perf_counter() - t0, writer.count
    if progress is not None and task is not None:
        progress.update(task, total=count, completed=count)  # a video's length was an estimate
    if writer.last is not None and (count - 1) not in marks:  # the true last frame (the length is an estimate)
        writer.thumbnails.append(_thumbnail(writer.last))
    log.info("%s: %d frames in %.1f s (%.2f frames/s)", name, count, seconds, count / seconds)
    return VideoEntry(
        name=name, source=str(stream.source.path), num_frames=count, size=stream.size, fps=float(stream.rate),
        seconds=seconds, video=f"videos/{mp4.name}" if video else None,
        folders=[f"{kind}/{name}" for kind in ("results", *(("overlays",) if overlays else ()), maps_folder)],
        thumbnails=writer.thumbnails, maps=writer.maps,
    )


def first_frame(start: int, first_mask_frame: int | None, first_mask: Path | None) -> int:
    """The first frame to segment (counted after the frame-rate cap, as ``segment.start``): ``first_mask`` is
    the mask of the first frame processed, so segmenting starts at the frame it annotates,
    ``segment.first_mask_frame``; without it, at ``segment.start``, which then must be 0 (the frame a mask of
    the first frame belongs to), so that a mask is never silently given to another frame.

    Raises:
        ValueError: ``segment.start > 0`` with a ``first_mask`` of no stated frame, ``first_mask_frame`` with a
            different ``start`` or without a ``first_mask``.
    """
    if first_mask is None:
        if first_mask_frame is not None:
            raise ValueError(f"segment.first_mask_frame={first_mask_frame} says which frame first_mask annotates, "
                             "but no first_mask= is given")
        return start
    if first_mask_frame is None:
        if start > 0:
            raise ValueError(
                f"first_mask={first_mask} with segment.start={start}: first_mask is the mask of the first frame "
                f"processed, so it would be taken as frame {start}'s. If it is, say so with "
                f"segment.first_mask_frame={start} (segmenting starts there); a mask of frame 0 (a DAVIS "
                "annotation 00000.png) needs segment.start=0")
        return 0
    if first_mask_frame < 0 or start not in (0, first_mask_frame):
        raise ValueError(f"segment.first_mask_frame={first_mask_frame} with segment.start={start}: lock-on and "
                         f"propagation start at the masked frame; leave segment.start unset or set it to "
                         f"{first_mask_frame}")
    return first_mask_frame


def read_first_mask(path: Path, source: VideoSource, size: tuple[int, int]) -> tuple[Tensor, np.ndarray]:
    """The ``(H, W)`` int64 ids of ``first_mask`` (resized, nearest, to the stream's ``size``) and its palette.

    Raises:
        ValueError: the mask is not a palette PNG, or its size is not the source's (naming the file).
    """
    labels, palette = read_palette_png(path)
    height, width = source.size()
    if labels.shape != (height, width):
        raise ValueError(
            f"first_mask={path} is {labels.shape[1]}x{labels.shape[0]} (WxH) but the frames of {source.path} are "
            f"{width}x{height}; expected the mask of its first frame at the same size")
    if labels.shape != size:
        labels = np.asarray(Image.fromarray(labels).resize((size[1], size[0]), Image.Resampling.NEAREST))
    return torch.from_numpy(labels.astype(np.int64)), palette


def segment_inputs(
    streams: list[FrameStream],
    segmenter: Callable[[FrameStream], Segmenter],
    out_dir: Path,
    palette: np.ndarray,
    options: EvalOptions,
    *,
    title: str,
    details: list[str],
    maps_folder: str = "slots",
) -> Path | None:
    """Segment every stream (see the module docstring) and write the report; ``segmenter(stream)`` gives
    each stream's segmenter. The outputs follow ``options.overlays``, ``videos`` and ``report``. A failed
    run removes the files it wrote under ``out_dir``.

    Returns:
        The path of ``report.html`` (None with ``options.report`` false).
    """
    with remove_on_failure(out_dir):
        entries = []
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _FramesPerSecond(),
                   TimeElapsedColumn())
        with ThreadPoolExecutor(max_workers=WRITERS) as pool, Progress(*columns) as progress:
            for stream in streams:
                entries.append(segment_video(
                    stream, segmenter(stream), out_dir, palette, maps_folder=maps_folder, overlays=options.overlays,
                    video=options.videos, pool=pool, progress=progress))
        frames = sum(e.num_frames for e in entries)
        seconds = sum(e.seconds for e in entries)
        details = [*details, f"{frames} frames in {seconds:.1f} s ({frames / seconds:.2f} frames/s)"]
        report = write_video_report(out_dir / "report.html", title, entries, details) if options.report else None
    for e in entries:
        print(f"{e.name}: {e.num_frames} frames at {e.size[1]}x{e.size[0]} in {e.seconds:.1f} s "
              f"({e.num_frames / e.seconds:.2f} frames/s) -> {out_dir / 'results' / e.name}")
    if report is not None:
        print(f"report: {report}")
    return report
