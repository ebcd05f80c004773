"""The metric tests run twice: on the compiled kernel (when built) and on the torch path.

Hand-computed cases need nothing beyond the package's own dependencies. Only the parity tests against
the toolkit's OpenCV path ask for the ``davis_numpy`` fixture, which skips them without OpenCV.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from dinosavi.metrics import compiled


@pytest.fixture(params=["compiled", "torch"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which J/F path the torch functions take; ``torch`` hides the compiled kernel."""
    if request.param == "compiled" and not compiled.available():
        pytest.skip("the compiled J/F kernel is not built")
    if request.param == "torch":
        monkeypatch.setattr(compiled, "_jf", None)
    return request.param


@pytest.fixture(scope="session")
def davis_numpy() -> ModuleType:
    """The per-frame NumPy + OpenCV baseline (``benchmarks/baselines/davis_numpy.py``); skips without OpenCV."""
    pytest.importorskip("cv2", reason="the toolkit-parity baseline dilates with OpenCV (pip install .[bench])")
    from benchmarks.baselines import davis_numpy

    return davis_numpy
