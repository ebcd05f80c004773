"""Palette PNGs: the unfiltered fast path equals PIL, everything else falls back to PIL."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dinosavi.data import png
from dinosavi.data.png import davis_palette, read_palette_png, write_palette_png


def _pil(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = Image.open(path)
    return np.asarray(image), png._full_palette(image.getpalette())


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(labels: np.ndarray, filters: list[int], interlace: int = 0) -> bytes:
    """A palette PNG whose row ``y`` uses filter type ``filters[y]`` (0 none, 1 sub, 2 up)."""
    h, w = labels.shape
    rows, prev = [], np.zeros(w, np.uint8)
    for y in range(h):
        row = labels[y]
        if filters[y] == 1:
            row = row - np.concatenate([[0], row[:-1]]).astype(np.uint8)
        elif filters[y] == 2:
            row = row - prev
        rows.append(bytes([filters[y]]) + row.astype(np.uint8).tobytes())
        prev = labels[y]
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, interlace)
    plte = davis_palette()[:8].tobytes()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"PLTE", plte)
            + _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b""))


def _labels() -> np.ndarray:
    labels = np.zeros((9, 13), np.uint8)
    labels[2:7, 3:10] = 1
    labels[4:9, 8:13] = 2
    return labels


@pytest.mark.parametrize("inflater", ["default", "zlib"])
def test_sample_masks_equal_pil(davis_root: Path, inflater: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if inflater == "zlib":
        monkeypatch.setattr(png, "_inflate", zlib)
    paths = sorted((davis_root / "Annotations" / "480p").glob("*/*.png"))[::7]
    assert paths
    for path in paths:
        assert png._read_unfiltered(path.read_bytes()) is not None, f"{path} did not take the fast path"
        labels, palette = read_palette_png(path)
        ref_labels, ref_palette = _pil(path)
        np.testing.assert_array_equal(labels, ref_labels)
        np.testing.assert_array_equal(palette, ref_palette)


def test_written_masks_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 256, size=(31, 67)).astype(np.uint8)
    write_palette_png(tmp_path / "a.png", labels)
    got, palette = read_palette_png(tmp_path / "a.png")
    np.testing.assert_array_equal(got, labels)
    np.testing.assert_array_equal(palette, davis_palette())


@pytest.mark.parametrize("filters", [[1] * 9, [0, 2, 0, 1, 2, 0, 0, 1, 0]])
def test_filtered_rows_fall_back_to_pil(tmp_path: Path, filters: list[int]) -> None:
    path = tmp_path / "f.png"
    path.write_bytes(_png(_labels(), filters))
    assert png._read_unfiltered(path.read_bytes()) is None
    labels, _ = read_palette_png(path)
    np.testing.assert_array_equal(labels, _labels())


def test_unfiltered_handmade_png_takes_the_fast_path(tmp_path: Path) -> None:
    path = tmp_path / "u.png"
    path.write_bytes(_png(_labels(), [0] * 9))
    fast = png._read_unfiltered(path.read_bytes())
    assert fast is not None
    np.testing.assert_array_equal(fast[0], _labels())
    np.testing.assert_array_equal(fast[1][:8], davis_palette()[:8])


def test_bad_checksum_is_named_by_pil(tmp_path: Path) -> None:
    data = bytearray(_png(_labels(), [0] * 9))
    data[data.index(b"IDAT") + 6] ^= 0xFF  # corrupt the image data: its chunk CRC no longer matches
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    assert png._read_unfiltered(bytes(data)) is None
    with pytest.raises(ValueError, match=r"bad\.png"):
        read_palette_png(path)


def test_not_a_palette_png_is_named(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.fromarray(_labels()).save(path)  # mode L
    with pytest.raises(ValueError, match=r"grey\.png.*palette"):
        read_palette_png(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        read_palette_png(tmp_path / "missing.png")
