"""A comparison figure: for chosen frames of a video, the frame and several label maps side by side.

Each block is one video: a row per frame (first, middle, last by default), a column per method (ground
truth, a slot model, label propagation, ...), every label map blended over its frame with
:func:`dinosavi.viz.overlay.overlay`. Column titles and row captions are drawn with PIL's default font.

Shapes: ``T`` frames, ``H, W`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from dinosavi.viz.overlay import overlay

__all__ = ["FigureBlock", "comparison_figure", "pick_frames"]

_TITLE = 14  # pixels of the caption strip above every tile


@dataclass
class FigureBlock:
    """One video of the figure.

    Attributes:
        name: caption of the block.
        frames: ``(T, H, W, 3)`` uint8 RGB.
        columns: column title -> ``(T, H, W)`` integer label map (0 background).
        palette: ``(256, 3)`` uint8 colours by id.
    """

    name: str
    frames: np.ndarray
    columns: dict[str, np.ndarray]
    palette: np.ndarray


def pick_frames(num_frames: int) -> list[int]:
    """The first, middle and last frame indices (fewer for very short videos)."""
    return sorted({0, num_frames // 2, num_frames - 1})


def comparison_figure(blocks: list[FigureBlock], height: int = 160) -> np.ndarray:
    """Tile ``blocks`` into one ``(H', W', 3)`` uint8 image; every tile is resized to ``height`` pixels high.

    Raises:
        ValueError: the blocks have different columns, or a label map does not match its frames.
    """
    if not blocks:
        raise ValueError("comparison_figure needs at least one block")
    titles = list(blocks[0].columns)
    rows: list[np.ndarray] = []
    for block in blocks:
        if list(block.columns) != titles:
            raise ValueError(f"block `{block.name}` has columns {list(block.columns)}; expected {titles}")
        for title, labels in block.columns.items():
            if labels.shape != block.frames.shape[:3]:
                raise ValueError(f"block `{block.name}`, column `{title}`: labels {labels.shape} do not match "
                                 f"frames {block.frames.shape[:3]}")
        for t in pick_frames(len(block.frames)):
            tiles = [_tile(block.frames[t], f"{block.name} frame {t}", height)]
            tiles += [_tile(overlay(block.frames[t], labels[t], block.palette), title, height)
                      for title, labels in block.columns.items()]
            rows.append(np.concatenate(tiles, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def _tile(image: np.ndarray, caption: str, height: int) -> np.ndarray:
    """``image`` resized to ``height`` pixels high with ``caption`` written in a white strip above it."""
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    resized = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    strip = Image.new("RGB", (width, _TITLE), (255, 255, 255))
    ImageDraw.Draw(strip).text((3, 1), caption, fill=(0, 0, 0))
    tile = np.concatenate([np.asarray(strip), resized], axis=0)
    return np.pad(tile, ((0, 2), (0, 2), (0, 0)), constant_values=255)
