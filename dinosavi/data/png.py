"""Palette PNGs whose pixel values are object ids: reading, writing, the DAVIS colour map.

DAVIS masks (and what PIL writes for them) are 8-bit palette PNGs, not interlaced, rows stored
unfiltered. For those, :func:`read_palette_png` inflates the image data once and takes the rows as a
view: inflating is nearly all of the work, and it goes through ``zlib-ng`` when that is installed
(about 5x faster than zlib on these highly compressible masks; see ``benchmarks/RESULTS.md``), else
through zlib. Any other PNG (filtered rows, interlacing, other bit depths or colour types, a bad
checksum) is read by PIL, which also names what is wrong with a broken file. Both give the same
array.
"""

from __future__ import annotations

import struct
import zlib
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image, UnidentifiedImageError

from dinosavi.atomic import atomic_path
from dinosavi.data.badfiles import UnreadableFileError

__all__ = ["INFLATE", "davis_palette", "open_image", "read_palette_png", "write_palette_png"]

_inflate: ModuleType
try:
    from zlib_ng import zlib_ng as _inflate

    INFLATE = "zlib-ng"  # which inflater the fast path uses
except ImportError:  # the `fast` extra is not installed: the standard library's zlib
    _inflate = zlib
    INFLATE = "zlib"

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@cache
def _davis_palette() -> np.ndarray:
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        c, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[index] = (r, g, b)
    return palette


def davis_palette() -> np.ndarray:
    """The standard PASCAL VOC / DAVIS colour map.

    Returns:
        (256, 3) uint8; id 0 is black, id 1 is (128, 0, 0), id 2 is (0, 128, 0).
    """
    return _davis_palette().copy()


def _full_palette(flat: bytes | list[int] | None) -> np.ndarray:
    """Pad a palette (flat RGB bytes or list, maybe short) to (256, 3) with the DAVIS colour map."""
    palette = davis_palette()
    if flat:
        colours = np.frombuffer(bytes(flat[: 256 * 3]), dtype=np.uint8)
        colours = colours[: len(colours) // 3 * 3].reshape(-1, 3)
        palette[: len(colours)] = colours
    return palette


def open_image(path: Path) -> Image.Image:
    """Open and decode an image file.

    Raises:
        FileNotFoundError: The file does not exist (names it).
        ValueError: The file is corrupt or not an image (names it).
    """
    if not path.is_file():
        raise FileNotFoundError(f"Image file not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UnreadableFileError(path, f"Cannot read image {path}: corrupt or not an image ({error})") from error
    return image


def _read_unfiltered(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Labels and palette of an 8-bit, non-interlaced palette PNG whose rows are all unfiltered; None
    for any other file (the caller then reads it with PIL)."""
    if not data.startswith(_SIGNATURE):
        return None
    pos, size, idat, plte = len(_SIGNATURE), None, [], b""
    try:
        while pos + 12 <= len(data):
            (length,) = struct.unpack_from(">I", data, pos)
            kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
            (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
            if kind in (b"IHDR", b"PLTE", b"IDAT") and zlib.crc32(kind + body) != crc:
                return None
            if kind == b"IHDR":
                width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
                if depth != 8 or colour != 3 or interlace != 0 or width == 0 or height == 0:
                    return None
                size = (height, width)
            elif kind == b"PLTE":
                plte = body
            elif kind == b"IDAT":
                idat.append(body)
            elif kind == b"IEND":
                break
            pos += 12 + length
        if size is None or not idat:
            return None
        height, width = size
        raw = _inflate.decompress(b"".join(idat), 15, height * (width + 1))
    except (struct.error, zlib.error, ValueError):
        return None
    if len(raw) != height * (width + 1):
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, width + 1)
    if rows[:, 0].any():  # some row is filtered (sub, up, average, Paeth)
        return None
    return rows[:, 1:], _full_palette(plte)


def read_palette_png(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a palette (mode "P") PNG whose pixel values are object ids.

    Args:
        path: The PNG file.

    Returns:
        labels (H, W) uint8, read-only, and palette (256, 3) uint8 (padded with the DAVIS colour map).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is corrupt or not a palette PNG.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file not found: {path}")
    fast = _read_unfiltered(path.read_bytes())
    if fast is not None:
        return fast
    image = open_image(path)
    if image.mode != "P":
        raise ValueError(
            f"Annotation {path} has PIL mode {image.mode!r}; expected a palette (mode P) PNG "
            "whose values are object ids"
        )
    return np.asarray(image, dtype=np.uint8), _full_palette(image.getpalette())


def write_palette_png(path: str | Path, labels: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write object ids as a palette PNG, atomically (temp file in the same folder, then rename).

    Args:
        path: Destination PNG; its folder must exist.
        labels: (H, W) integer object ids in [0, 255].
        palette: (256, 3) uint8 colours; the DAVIS colour map when None.

    Raises:
        ValueError: Labels are not 2-D or hold values outside [0, 255]; the palette is not (N<=256, 3).
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"write_palette_png({path}): expected (H, W) labels, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(
            f"write_palette_png({path}): labels must lie in [0, 255], got [{labels.min()}, {labels.max()}]"
        )
    colours = davis_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    if colours.ndim != 2 or colours.shape[1] != 3 or colours.shape[0] > 256:
        raise ValueError(f"write_palette_png({path}): expected a (256, 3) palette, got {colours.shape}")
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(colours.reshape(-1).tolist())
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
