"""Part of an annotated split: some of its sequences, and a frame range of each (``data.sequences``,
``data.start``, ``data.stop``), for evaluation, label propagation and scoring.

The first frame of the range is the first frame processed: its annotation is the one lock-on and
propagation start from, and scoring leaves out the first and last frames of the range, as the DAVIS
protocol does for a whole sequence. Listing names needs no torch (``mode=score`` imports none).

Shapes: ``T`` frames, ``H, W`` pixels.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dinosavi.data.davis import SequenceDataset, VideoSequence

__all__ = ["SequenceSubset", "check_range", "frame_range", "select_names"]


def select_names(available: list[str], wanted: list[str] | None, where: str) -> list[str]:
    """The names of ``wanted`` in the order of ``available`` (all of them when None).

    Raises:
        ValueError: a wanted name that ``available`` lacks (``where`` says what was searched), or none wanted.
    """
    if wanted is None:
        return list(available)
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ValueError(f"data.sequences: {', '.join(missing)} not in {where}; it holds {', '.join(available)}")
    if not wanted:
        raise ValueError("data.sequences=[] selects nothing; leave it unset (null) for every sequence")
    chosen = set(wanted)
    return [name for name in available if name in chosen]


def check_range(start: int, stop: int | None) -> None:
    """Raise ``ValueError`` naming ``data.start``/``data.stop`` unless ``0 <= start < stop`` (stop None: the end)."""
    if start < 0 or (stop is not None and stop <= start):
        raise ValueError(f"data.start={start}, data.stop={stop}: expected 0 <= start < stop (stop null: to the end)")


def frame_range(length: int, start: int, stop: int | None, name: str) -> slice:
    """The frames ``start .. stop - 1`` of a ``length``-frame sequence (``stop`` None or past the end: to the end).

    Raises:
        ValueError: a range that selects no frame of sequence ``name``.
    """
    check_range(start, stop)
    if start >= length:
        raise ValueError(f"data.start={start} is past the end of sequence {name} ({length} frames)")
    return slice(start, stop)


class SequenceSubset:
    """The sequences ``names`` of ``dataset`` (every one when None), each cut to the frames ``start`` to
    ``stop`` (exclusive; None: to the end). A :class:`~dinosavi.data.davis.SequenceDataset` itself.

    Args:
        dataset: the split (``DavisDataset``, ``MoviDataset``).
        names: the sequences to keep (``data.sequences``).
        start: the first frame kept (``data.start``).
        stop: the end of the range (``data.stop``).
        where: what ``dataset`` is, named in errors (e.g. ``split val of data.root=<dir>``).

    Raises:
        ValueError: a name the split does not hold, or a malformed range.
    """

    def __init__(self, dataset: SequenceDataset, names: list[str] | None = None, start: int = 0,
                 stop: int | None = None, where: str = "the split") -> None:
        check_range(start, stop)  # each sequence's length is checked as it is read
        self.dataset, self.start, self.stop = dataset, start, stop
        self.sequence_names = select_names(list(dataset.sequence_names), names, where)
        self._index = {name: dataset.sequence_names.index(name) for name in self.sequence_names}

    def __len__(self) -> int:
        return len(self.sequence_names)

    def __getitem__(self, index: int) -> VideoSequence:
        """Sequence ``index`` of the subset: ``frames`` ``(T, 3, H, W)``, ``labels`` ``(T, H, W)`` of the range."""
        name = self.sequence_names[index]
        seq = self.dataset[self._index[name]]
        cut = frame_range(len(seq.frames), self.start, self.stop, name)
        labels = seq.labels
        if labels is not None and len(labels) == len(seq.frames):
            labels = labels[cut]
        elif labels is not None and self.start > 0:
            raise ValueError(f"sequence {name}: only frame 0 is annotated here, so data.start={self.start} has no "
                             "first-frame mask")
        return replace(seq, frames=seq.frames[cut], labels=labels, frame_names=seq.frame_names[cut])

    def frame_paths(self, name: str) -> list[Path]:
        """The source files of the range's frames of sequence ``name``."""
        paths = self.dataset.frame_paths(name)
        return paths[frame_range(len(paths), self.start, self.stop, name)]
