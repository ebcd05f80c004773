"""The metric tests run twice: on the compiled kernel (when built) and on the torch path."""

from __future__ import annotations

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
