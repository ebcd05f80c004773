"""Seeding once at the entry point: Python, NumPy and torch draw the same numbers after the same seed, torch can be
left alone, and the seed is logged."""

from __future__ import annotations

import logging
import random
import subprocess
import sys

import numpy as np
import torch

from dinosavi.utils import seed_everything
from tests.conftest import REPO_ROOT


def _draws() -> tuple[float, np.ndarray, torch.Tensor]:
    return random.random(), np.random.rand(3), torch.rand(3)


def test_the_same_seed_gives_the_same_draws():
    seed_everything(7)
    first = _draws()
    seed_everything(7)
    second = _draws()
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
    assert torch.equal(first[2], second[2])
    seed_everything(8)
    other = _draws()
    assert other[0] != first[0] and not np.array_equal(other[1], first[1]) and not torch.equal(other[2], first[2])


def test_without_torch_rng_only_python_and_numpy_are_seeded():
    seed_everything(7)
    expected = _draws()
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    seed_everything(7, torch_rng=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    python, numpy, _ = _draws()
    assert python == expected[0]
    np.testing.assert_array_equal(numpy, expected[1])


def test_the_seed_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="dinosavi.utils"):
        seed_everything(11)
        seed_everything(12, torch_rng=False)
    assert [r.getMessage() for r in caplog.records] == ["seed=11", "seed=12 (python, numpy; torch not used)"]


def test_without_torch_rng_torch_is_not_imported():
    code = ("import sys; from dinosavi.utils import seed_everything; seed_everything(3, torch_rng=False); "
            "assert 'torch' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
