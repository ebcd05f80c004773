"""The CLI's front door: help and configuration errors answer without importing torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# runs the CLI in-process, then reports whether torch was imported (on success or on a config error)
_PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['dinosavi', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('dinosavi', run_name='__main__')\n"
    "except SystemExit as exit:\n"
    "    print('exit', exit.code)\n"
    "except Exception as error:\n"
    "    print('error', type(error).__name__, error)\n"
    "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n"
)


def _probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args", [(), ("mode=help",), ("mode=help", "hparam=slot-s256d")])
def test_help_does_not_import_torch(args: tuple[str, ...]) -> None:
    out = _probe(*args)
    assert out.returncode == 0, out.stderr
    assert "modes:" in out.stdout and "score" in out.stdout
    assert "torch not imported" in out.stdout


@pytest.mark.parametrize(("args", "named"), [(("mode=score", "model.bogus=1"), "bogus"),
                                             (("mode=train", "train.max_steps=lots"), "max_steps"),
                                             (("mode=help", "nosuchkey=1"), "nosuchkey")])
def test_config_errors_do_not_import_torch(args: tuple[str, ...], named: str) -> None:
    out = _probe(*args, "hydra.run.dir=/nonexistent/never-made")
    assert "torch not imported" in out.stdout
    assert named in out.stdout + out.stderr
    assert "exit 0" not in out.stdout
