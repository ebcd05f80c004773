"""The options of the training loop: valid values kept, and the errors that name the key and the bad value."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from dinosavi.training.options import TrainOptions, warmup_steps
from tests.conftest import REPO_ROOT


def test_the_default_input_size_is_not_shared():
    first = TrainOptions()
    first.input_size[0] = 1
    assert TrainOptions().input_size[0] != 1


def test_valid_options_are_kept():
    options = TrainOptions(max_steps=1, save_every=1, log_every=1, input_size=[48, 64], precision="bf16",
                           grad_clip=None)
    assert (options.max_steps, options.input_size, options.precision, options.grad_clip) == (1, [48, 64], "bf16", None)


def test_an_unknown_precision_names_train_precision():
    with pytest.raises(ValueError, match=r"Unknown train\.precision `fp8`; expected one of"):
        TrainOptions(precision="fp8")


@pytest.mark.parametrize("backend", ["", "  "])
def test_an_empty_compile_backend_names_train_compile(backend):
    with pytest.raises(ValueError, match=r"train\.compile must be null \(eager\) or a torch\.compile backend"):
        TrainOptions(compile=backend)


@pytest.mark.parametrize(("options", "got"), [
    ({"max_steps": 0}, "got 0, 500, 50"), ({"save_every": 0}, "got 1000, 0, 50"),
    ({"log_every": -1}, "got 1000, 500, -1"),
])
def test_step_counts_must_be_positive(options, got):
    with pytest.raises(ValueError, match=rf"train\.max_steps, save_every and log_every must be >= 1, {got}$"):
        TrainOptions(**options)


@pytest.mark.parametrize("size", [[224], [224, 224, 3], [0, 64], [64, -1]])
def test_input_size_must_be_two_positive_sides(size):
    with pytest.raises(ValueError, match=re.escape(f"train.input_size must be [H, W] of positive pixels, got {size}")):
        TrainOptions(input_size=size)


def test_the_options_import_no_torch():
    code = ("import sys; from dinosavi.training.options import TrainOptions; TrainOptions(); "
            "assert 'torch' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("max_steps", "pct_start", "steps"), [
    (10, 0.1, 0), (9, 0.1, 0), (11, 0.1, 0), (1, 0.1, 0), (1, 1.0, 0), (20, 0.05, 0),  # under 2 steps: none
    (15, 0.1, 2), (20, 0.1, 2), (25, 0.1, 3), (5, 1.0, 4), (2000, 0.1, 200), (30000, 0.1, 3000), (10000, 0.05, 500),
])
def test_warm_up_is_a_whole_number_of_steps_or_none(max_steps, pct_start, steps):
    assert warmup_steps(max_steps, pct_start) == steps


@pytest.mark.parametrize("options", [{"pct_start": 1.5}, {"pct_start": -0.1}, {"lr": 0.0}])
def test_learning_rate_and_warm_up_share_are_checked_by_key(options):
    with pytest.raises(ValueError, match=r"train\.lr must be positive and train\.pct_start in \[0, 1\]"):
        TrainOptions(**options)
