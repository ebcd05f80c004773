"""DAVIS-layout reader: JPEG frames, palette-PNG annotations and split files.

Layout::

    root/JPEGImages/<quality>/<seq>/00000.jpg ...
    root/Annotations/<quality>/<seq>/00000.png ...   palette PNGs: 0 background, 1..K objects, 255 void
    root/ImageSets/<year>/<split>.txt                one sequence name per line

The image readers here (:func:`read_rgb`, :func:`read_frames`) are shared by the clip datasets in
:mod:`dinosavi.data.videos`; palette PNGs are read and written by :mod:`dinosavi.data.png` (re-exported
here). torch is imported only where frames become tensors, so listing a split and reading masks
(``mode=score``) does not import it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from dinosavi.data.badfiles import UnreadableFileError
from dinosavi.data.png import davis_palette, open_image, read_palette_png, write_palette_png

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "DECODE_THREADS",
    "DavisDataset",
    "SequenceDataset",
    "VideoSequence",
    "davis_palette",
    "open_image",
    "read_frames",
    "read_palette_png",
    "read_rgb",
    "write_palette_png",
]

AnnotationMode = Literal["all", "first", "none"]
DECODE_THREADS = min(8, os.cpu_count() or 1)


@dataclass
class VideoSequence:
    """One video sequence in memory, as every annotated dataset (DAVIS, MOVi, YouTube-VIS) loads it.

    Attributes:
        name: Sequence name, e.g. ``"blackswan"``.
        frames: (T, 3, H, W) uint8 RGB.
        labels: (T, H, W) int64 object ids (0 background, 255 void) for ``annotations="all"``;
            (1, H, W) holding only frame 0 for ``annotations="first"``; ``None`` for ``"none"``.
        palette: (256, 3) uint8, the palette of the first annotation (the DAVIS colour map when
            there is no annotation or its palette is short).
        frame_names: File stems of the T frames, e.g. ``"00000"``.
    """

    name: str
    frames: Tensor
    labels: Tensor | None
    palette: np.ndarray
    frame_names: list[str]


class SequenceDataset(Protocol):
    """Whole annotated sequences, as evaluation reads them (:class:`DavisDataset`, ``MoviDataset``)."""

    sequence_names: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> VideoSequence: ...

    def frame_paths(self, name: str) -> list[Path]:
        """The source files of the frames of sequence ``name``, in order."""
        ...


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode one image file as RGB.

    Args:
        path: JPEG/PNG file.

    Returns:
        (H, W, 3) uint8.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is corrupt or not an image.
    """
    image = open_image(Path(path))
    return np.asarray(image.convert("RGB") if image.mode != "RGB" else image, dtype=np.uint8)


def read_frames(paths: Sequence[str | Path], num_threads: int = DECODE_THREADS) -> Tensor:
    """Decode same-sized frames in a thread pool (PIL releases the GIL while decoding).

    Args:
        paths: T image files.
        num_threads: Decoder threads; 1 decodes in the calling thread.

    Returns:
        (T, 3, H, W) uint8 RGB.

    Raises:
        UnreadableFileError: (a ValueError) A corrupt image, or a frame whose size differs from the
            first's (names the file).
        ValueError: No paths.
    """
    if len(paths) == 0:
        raise ValueError("read_frames got no image paths; expected at least one frame")
    if num_threads > 1 and len(paths) > 1:
        with ThreadPoolExecutor(min(num_threads, len(paths))) as pool:
            arrays = list(pool.map(read_rgb, paths))
    else:
        arrays = [read_rgb(p) for p in paths]
    expected = arrays[0].shape
    for path, array in zip(paths, arrays):
        if array.shape != expected:
            raise UnreadableFileError(
                path, f"Frame {path} has size {array.shape[1]}x{array.shape[0]} (WxH); expected "
                f"{expected[1]}x{expected[0]} like {paths[0]}"
            )
    import torch

    stacked = torch.from_numpy(np.stack(arrays))  # (T, H, W, 3)
    return stacked.permute(0, 3, 1, 2).contiguous()


class DavisDataset:
    """Whole DAVIS sequences, indexable like a torch ``Dataset``.

    Args:
        root: Folder holding ``JPEGImages``, ``Annotations`` and ``ImageSets``.
        split: Split file name under ``ImageSets/<year>`` without ``.txt``, e.g. ``"val"``.
        year: ``"2016"`` or ``"2017"`` (any folder name under ``ImageSets``).
        quality: Resolution folder, e.g. ``"480p"``.
        annotations: ``"all"`` reads a mask for every frame (each must exist), ``"first"`` only the
            first frame's (``labels`` is then (1, H, W)), ``"none"`` reads no masks.

    Raises:
        FileNotFoundError: The split file is missing.
        ValueError: Unknown ``annotations`` mode or an empty split file.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        year: str = "2017",
        quality: str = "480p",
        annotations: AnnotationMode = "all",
    ) -> None:
        if annotations not in ("all", "first", "none"):
            raise ValueError(f"annotations must be 'all', 'first' or 'none', got {annotations!r}")
        self.root = Path(root)
        self.split, self.year, self.quality, self.annotations = split, year, quality, annotations
        split_file = self.root / "ImageSets" / year / f"{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(
                f"Split file not found: {split_file}; expected one sequence name per line "
                f"under {self.root / 'ImageSets' / year}"
            )
        self.sequence_names: list[str] = [
            line.strip() for line in split_file.read_text().splitlines() if line.strip()
        ]
        if not self.sequence_names:
            raise ValueError(f"Split file {split_file} lists no sequences")

    def __len__(self) -> int:
        return len(self.sequence_names)

    def __getitem__(self, index: int) -> VideoSequence:
        return self.load(self.sequence_names[index])

    def _sequence_dir(self, kind: str, name: str) -> Path:
        folder = self.root / kind / self.quality / name
        if not folder.is_dir():
            raise FileNotFoundError(f"Sequence folder not found: {folder} (sequence {name!r})")
        return folder

    def frame_paths(self, name: str) -> list[Path]:
        """Sorted JPEG frames of sequence ``name``.

        Raises:
            FileNotFoundError: The sequence folder is missing or holds no ``.jpg`` files.
        """
        folder = self._sequence_dir("JPEGImages", name)
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        if not paths:
            raise FileNotFoundError(f"No .jpg frames in {folder}")
        return paths

    def annotation_paths(self, name: str) -> list[Path]:
        """Sorted annotation PNGs of sequence ``name`` (may be fewer than the frames).

        Raises:
            FileNotFoundError: The annotation folder is missing or holds no ``.png`` files.
        """
        folder = self._sequence_dir("Annotations", name)
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
        if not paths:
            raise FileNotFoundError(f"No .png annotations in {folder}")
        return paths

    def load(self, name: str) -> VideoSequence:
        """Read frames (and masks, per ``annotations``) of sequence ``name``.

        Raises:
            FileNotFoundError: A sequence folder, or a frame's annotation with ``"all"``, is missing.
            ValueError: A corrupt image, a non-palette annotation, or frames whose size differs
                from the annotations'.
        """
        import torch

        frame_files = self.frame_paths(name)
        frame_names = [p.stem for p in frame_files]
        frames = read_frames(frame_files)  # (T, 3, H, W)
        if self.annotations == "none":
            return VideoSequence(name, frames, None, davis_palette(), frame_names)

        folder = self._sequence_dir("Annotations", name)
        wanted = frame_names if self.annotations == "all" else frame_names[:1]
        label_files = [folder / f"{stem}.png" for stem in wanted]
        for stem, path in zip(wanted, label_files):
            if not path.is_file():
                raise FileNotFoundError(f"Annotation missing for frame {stem!r} of {name!r}: expected {path}")
        with ThreadPoolExecutor(min(DECODE_THREADS, len(label_files))) as pool:
            read = list(pool.map(read_palette_png, label_files))
        height, width = frames.shape[-2:]
        for path, (labels, _) in zip(label_files, read):
            if labels.shape != (height, width):
                raise ValueError(
                    f"Annotation {path} is {labels.shape[1]}x{labels.shape[0]} (WxH) but the frames "
                    f"of {name!r} are {width}x{height}; expected equal sizes"
                )
        stacked = torch.from_numpy(np.stack([labels for labels, _ in read])).long()  # (T, H, W)
        return VideoSequence(name, frames, stacked, read[0][1], frame_names)
