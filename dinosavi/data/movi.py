"""MOVi-C/E reader: videos exported as folders of RGB frames and instance-id PNGs.

Layout::

    root/[<split>/]rgb/<video>/00000.jpg ...   RGB frames (.jpg, .jpeg or .png), sorted by name
    root/[<split>/]seg/<video>/00000.png ...   instance ids per pixel, 0 background, same stems as the frames

When ``root/<split>`` is a folder it holds ``rgb/`` and ``seg/``; otherwise ``root`` itself does and
all its videos form the split. The videos are the sub-folders of ``rgb/``, sorted. Segmentation PNGs
may be palette (``P``), grayscale (``L``) or 16-bit (``I;16``, ``I``) images; ids must lie in
``0..254`` (255 is DAVIS void). Their palette carries no meaning: sequences use :func:`davis_palette`.

:class:`MoviDataset` has the interface of :class:`~dinosavi.data.davis.DavisDataset` and returns the
same :class:`~dinosavi.data.davis.VideoSequence`, so evaluation runs on either unchanged.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from dinosavi.data.davis import DECODE_THREADS, VideoSequence, davis_palette, open_image, read_frames

__all__ = ["FRAME_EXTENSIONS", "MAX_INSTANCE_ID", "MoviDataset", "read_id_png"]

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
MAX_INSTANCE_ID = 254
_ID_MODES = ("P", "L", "I;16", "I;16L", "I;16B", "I")


def read_id_png(path: str | Path) -> np.ndarray:
    """Read a PNG whose pixel values are instance ids (palette, 8-bit or 16-bit grayscale).

    Args:
        path: The PNG file.

    Returns:
        (H, W) uint8 ids in ``0..254``.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is corrupt, has another PIL mode (e.g. RGB), or holds an id outside
            ``0..254`` (names the file and the id).
    """
    path = Path(path)
    image = open_image(path)
    if image.mode not in _ID_MODES:
        raise ValueError(
            f"Segmentation {path} has PIL mode {image.mode!r}; expected one of {', '.join(_ID_MODES)} "
            "whose values are instance ids"
        )
    ids = np.asarray(image)
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high > MAX_INSTANCE_ID:
        bad = low if low < 0 else high
        raise ValueError(
            f"Segmentation {path} holds instance id {bad}; expected ids in 0..{MAX_INSTANCE_ID} "
            "(255 is reserved for DAVIS void)"
        )
    return ids.astype(np.uint8)


def _subfolders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


class MoviDataset:
    """Whole MOVi videos with every frame's instance ids, indexable like a torch ``Dataset``.

    The folder structure is checked at construction (every video has frames and a segmentation for
    each); image contents (corrupt files, sizes, ids) when a video is loaded.

    Args:
        root: Folder holding ``<split>/rgb`` and ``<split>/seg``, or ``rgb`` and ``seg`` directly.
        split: Sub-folder of ``root`` to read when it exists, e.g. ``"validation"``; None reads ``root``.

    Raises:
        FileNotFoundError: ``rgb/`` or ``seg/`` is missing, ``rgb/`` has no video, a video has no
            frames, no ``seg/<video>`` folder or no segmentation for one of its frames.
        ValueError: Two frames of a video share a stem (e.g. ``00000.jpg`` and ``00000.png``).
    """

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        self.root, self.split = Path(root), split
        folder = self.root / split if split is not None and (self.root / split).is_dir() else self.root
        self.rgb_dir, self.seg_dir = folder / "rgb", folder / "seg"
        where = f"split {split!r} (no folder {self.root / split}), " if split and folder == self.root else ""
        if not self.rgb_dir.is_dir():
            raise FileNotFoundError(
                f"MOVi frame folder not found: {self.rgb_dir}; {where}expected rgb/<video>/ frames "
                f"and seg/<video>/ PNGs under {folder}"
            )
        if not self.seg_dir.is_dir():
            raise FileNotFoundError(
                f"MOVi segmentation folder not found: {self.seg_dir}; expected seg/<video>/ PNGs beside {self.rgb_dir}"
            )
        self.sequence_names: list[str] = _subfolders(self.rgb_dir)
        if not self.sequence_names:
            raise FileNotFoundError(f"No video folders in {self.rgb_dir}; expected rgb/<video>/ sub-folders")
        self._frames = {name: self._index(name) for name in self.sequence_names}

    def _index(self, name: str) -> list[Path]:
        """Sorted frames of video ``name``, after checking each has a segmentation PNG."""
        rgb = self.rgb_dir / name
        paths = sorted(p for p in rgb.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS and p.is_file())
        if not paths:
            raise FileNotFoundError(f"No frames in {rgb}; expected {', '.join(FRAME_EXTENSIONS)} files")
        stems: dict[str, Path] = {}
        for path in paths:
            if path.stem in stems:
                raise ValueError(f"Frames {stems[path.stem]} and {path} of video {name!r} share a stem; expected one")
            stems[path.stem] = path
        seg = self.seg_dir / name
        if not seg.is_dir():
            raise FileNotFoundError(f"Segmentation folder not found: {seg}; expected one PNG per frame of {rgb}")
        present = {p.name for p in seg.iterdir()}
        for stem in stems:
            if f"{stem}.png" not in present:
                raise FileNotFoundError(
                    f"Segmentation missing for frame {stems[stem]}: expected {seg / f'{stem}.png'}"
                )
        return paths

    def __len__(self) -> int:
        return len(self.sequence_names)

    def __getitem__(self, index: int) -> VideoSequence:
        return self.load(self.sequence_names[index])

    def frame_paths(self, name: str) -> list[Path]:
        """Sorted RGB frames of video ``name``.

        Raises:
            KeyError: ``name`` is not a video of this split.
        """
        if name not in self._frames:
            raise KeyError(f"Unknown MOVi video {name!r} in {self.rgb_dir}")
        return list(self._frames[name])

    def segmentation_paths(self, name: str) -> list[Path]:
        """The segmentation PNG of each frame of video ``name``, in frame order."""
        return [self.seg_dir / name / f"{p.stem}.png" for p in self.frame_paths(name)]

    def load(self, name: str) -> VideoSequence:
        """Read every frame and its instance ids of video ``name``.

        Returns:
            The sequence: ``frames`` (T, 3, H, W) uint8, ``labels`` (T, H, W) int64 ids in 0..254,
            the DAVIS ``palette`` and the frames' stems.

        Raises:
            KeyError: ``name`` is not a video of this split.
            ValueError: A corrupt image, frames of different sizes, a segmentation of another size
                than its frame, or an id outside 0..254 (each names the file).
        """
        frame_files = self.frame_paths(name)
        frames = read_frames(frame_files)  # (T, 3, H, W)
        seg_files = self.segmentation_paths(name)
        with ThreadPoolExecutor(min(DECODE_THREADS, len(seg_files))) as pool:
            ids = list(pool.map(read_id_png, seg_files))
        height, width = frames.shape[-2:]
        for path, frame, labels in zip(seg_files, frame_files, ids):
            if labels.shape != (height, width):
                raise ValueError(
                    f"Segmentation {path} is {labels.shape[1]}x{labels.shape[0]} (WxH) but frame {frame} is "
                    f"{width}x{height}; expected equal sizes"
                )
        stacked = torch.from_numpy(np.stack(ids)).long()  # (T, H, W)
        return VideoSequence(name, frames, stacked, davis_palette(), [p.stem for p in frame_files])
