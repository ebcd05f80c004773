import numpy as np
import pytest

from dinosavi.viz.figure import FigureBlock, comparison_figure, pick_frames


def _block(name: str, t: int, h: int, w: int, columns: tuple[str, ...] = ("ground truth", "model")) -> FigureBlock:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
    labels = np.zeros((t, h, w), dtype=np.int64)
    labels[:, : h // 2, : w // 2] = 1
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[1] = (255, 0, 0)
    return FigureBlock(name, frames, dict.fromkeys(columns, labels), palette)


def test_pick_frames():
    assert pick_frames(24) == [0, 12, 23]
    assert pick_frames(2) == [0, 1]
    assert pick_frames(1) == [0]


def test_comparison_figure_tiles_a_row_per_picked_frame_and_a_column_per_method():
    figure = comparison_figure([_block("a", 24, 48, 64), _block("b", 5, 40, 80)], height=40)
    tile_h = 40 + 14 + 2  # the image, its caption strip, the gap
    assert figure.dtype == np.uint8 and figure.shape[0] == 6 * tile_h  # 3 frames of each block
    # the widest row: 3 tiles of an 80x40 frame scaled to 40 high (80 px + 2 gap each)
    assert figure.shape[1] == 3 * (80 + 2)
    # the label map is blended over the frame: the red object shows in the 'model' tile of the first row
    model_tile = figure[14 : 14 + 40, 2 * (53 + 2) : 2 * (53 + 2) + 53].astype(int)
    assert (model_tile[:15, :20, 0] - model_tile[:15, :20, 2]).mean() > 20


def test_comparison_figure_checks_its_blocks():
    with pytest.raises(ValueError, match="at least one block"):
        comparison_figure([])
    with pytest.raises(ValueError, match="block `b` has columns"):
        comparison_figure([_block("a", 3, 8, 8), _block("b", 3, 8, 8, ("ground truth",))])
    bad = _block("c", 3, 8, 8)
    bad.columns["model"] = bad.columns["model"][:, :4]
    with pytest.raises(ValueError, match="column `model`"):
        comparison_figure([bad])
