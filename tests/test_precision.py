"""Numeric precisions by name: the check names the config key and the choices, each name gives its number format,
and the names need no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dinosavi.precision import PRECISIONS, check_precision, precision_dtype
from tests.conftest import REPO_ROOT


def test_each_name_rounds_and_overflows_as_its_format():
    """fp32 keeps both values; bf16 (8-bit mantissa, fp32's range) rounds ``1 + 2**-9`` to 1 but holds 70000;
    fp16 (11-bit mantissa, largest value 65504) keeps ``1 + 2**-9`` and overflows at 70000."""
    values = torch.tensor([1 + 2**-9, 70000.0])
    kept = {name: values.to(precision_dtype(name)).float() for name in PRECISIONS}
    assert kept["fp32"].tolist() == values.tolist()
    assert kept["bf16"][0] == 1.0 and kept["bf16"][1].isfinite()
    assert kept["fp16"][0] == 1 + 2**-9 and kept["fp16"][1].isinf()


def test_check_names_the_key_the_value_and_the_choices():
    for name in PRECISIONS:
        check_precision(name, "train.precision")
    with pytest.raises(ValueError, match=r"Unknown train\.precision `fp8`; expected one of \['bf16', 'fp16', 'fp32'\]"):
        check_precision("fp8", "train.precision")
    with pytest.raises(ValueError, match=r"^Unknown precision `FP32`"):
        check_precision("FP32")


def test_an_unknown_dtype_name_is_an_error():
    with pytest.raises(ValueError, match="Unknown precision `fp64`"):
        precision_dtype("fp64")


def test_checking_a_name_imports_no_torch():
    code = "import sys, dinosavi.precision as p; p.check_precision('bf16'); assert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
