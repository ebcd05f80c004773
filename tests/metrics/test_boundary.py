"""Bit-packed boundary planes: the word layout, guard filling, disk dilation, popcount and matching, each
against the plain reference (:mod:`tests.metrics.reference`) or hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinosavi.metrics.boundary import dilate_disk, fill_guards, layout, match_counts, popcount_sum
from tests.metrics import reference


def _masks(rng: np.random.Generator, shape: tuple[int, int, int], density: float) -> np.ndarray:
    return rng.random(shape) < density


@pytest.mark.parametrize(("radius", "expected"), [(0, (1, 62)), (1, (1, 62)), (8, (8, 48)), (16, (16, 32)),
                                                  (40, (16, 32))])
def test_layout(radius: int, expected: tuple[int, int]) -> None:
    assert layout(radius) == expected


@pytest.mark.parametrize("radius", [0, 3, 16])
def test_pack_unpack_round_trip(radius: int) -> None:
    """The test helpers' reading of the layout: pixel x is bit guard + x % payload of word x // payload."""
    mask = _masks(np.random.default_rng(radius), (2, 3, 150), 0.5)
    planes = reference.pack_planes(mask, radius)
    guard, payload = layout(radius)
    assert planes.shape == (2, 3, -(-150 // payload))
    assert np.array_equal(reference.unpack_planes(planes, 150, radius), mask)
    one = np.zeros((1, 1, 150), bool)
    one[0, 0, payload + 2] = True  # second word, third payload bit
    assert reference.pack_planes(one, radius)[0, 0].tolist()[:2] == [0, 1 << (guard + 2)]


@pytest.mark.parametrize("radius", [1, 5, 16])
def test_fill_guards_copies_the_neighbouring_pixels(radius: int) -> None:
    """After filling, bit b of word w holds pixel w * payload + b - guard (0 outside the row)."""
    guard, payload = layout(radius)
    W = 3 * payload - 7
    mask = _masks(np.random.default_rng(radius), (2, 4, W), 0.5)
    planes = torch.from_numpy(reference.pack_planes(mask, radius))
    planes |= (1 << (guard - 1)) | (1 << (guard + payload))  # stale guard bits are overwritten
    fill_guards(planes, guard, payload, torch.empty_like(planes))
    Wp = planes.shape[-1]
    padded = np.zeros((2, 4, Wp * payload + 2 * guard), bool)
    padded[..., guard : guard + W] = mask
    bits = (planes.numpy().view(np.uint64)[..., None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    for w in range(Wp):
        expected = padded[..., w * payload : w * payload + 64]
        assert np.array_equal(bits[:, :, w].astype(bool), expected), w


@pytest.mark.parametrize("radius", [0, 1, 2, 7, 16, 17, 40])
def test_dilate_disk_equals_reference(radius: int) -> None:
    """Radii below, at and above the 16 guard bits; rows that span several words; the input left unchanged."""
    mask = _masks(np.random.default_rng(radius), (3, 23, 141), 0.01)
    mask[0, 0, 0] = mask[1, -1, -1] = mask[2, 11, 62] = True  # corners and a word boundary
    planes = torch.from_numpy(reference.pack_planes(mask, radius))
    before = planes.clone()
    out = reference.unpack_planes(dilate_disk(planes, radius, *layout(radius)).numpy(), 141, radius)
    assert torch.equal(planes, before)
    for n in range(3):
        assert np.array_equal(out[n], reference.dilate(mask[n], radius)), n


def test_dilate_disk_hand_computed() -> None:
    """A lone pixel grows into the disk x**2 + y**2 <= 4: 13 pixels, the plus shape of width 5."""
    mask = np.zeros((1, 7, 7), bool)
    mask[0, 3, 3] = True
    out = reference.unpack_planes(dilate_disk(torch.from_numpy(reference.pack_planes(mask, 2)), 2, *layout(2)).numpy(),
                                  7, 2)[0]
    expected = np.array([[0, 0, 0, 0, 0, 0, 0],
                         [0, 0, 0, 1, 0, 0, 0],
                         [0, 0, 1, 1, 1, 0, 0],
                         [0, 1, 1, 1, 1, 1, 0],
                         [0, 0, 1, 1, 1, 0, 0],
                         [0, 0, 0, 1, 0, 0, 0],
                         [0, 0, 0, 0, 0, 0, 0]], bool)
    assert np.array_equal(out, expected)


def test_popcount_sum() -> None:
    words = torch.tensor([[0, 1, -1], [0x5555, 1 << 62, -(1 << 63)]], dtype=torch.int64)
    assert popcount_sum(words.clone()).tolist() == [0 + 1 + 64, 8 + 1 + 1]
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 63), (1 << 63) - 1, size=(4, 3, 5), dtype=np.int64)
    expected = [sum(bin(int(v) & ((1 << 64) - 1)).count("1") for v in x[n].ravel()) for n in range(4)]
    assert popcount_sum(torch.from_numpy(x.copy())).tolist() == expected


@pytest.mark.parametrize("radius", [0, 2, 8, 20])
def test_match_counts_equal_reference(radius: int) -> None:
    rng = np.random.default_rng(radius)
    a, b = _masks(rng, (4, 19, 97), 0.03), _masks(rng, (4, 19, 97), 0.03)
    a[3] = False  # an empty plane matches nothing and is matched by nothing
    a_matched, b_matched = match_counts(torch.from_numpy(reference.pack_planes(a, radius)),
                                        torch.from_numpy(reference.pack_planes(b, radius)), radius)
    assert a_matched.shape == b_matched.shape == (4,)
    assert a_matched.tolist() == [int((a[n] & reference.dilate(b[n], radius)).sum()) for n in range(4)]
    assert b_matched.tolist() == [int((b[n] & reference.dilate(a[n], radius)).sum()) for n in range(4)]
    assert a_matched[3] == 0 and b_matched[3] == 0
