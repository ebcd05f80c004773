"""The CLI entry point: ``python -m dinosavi`` without a mode prints the help."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO_ROOT


def _run_cli(args: list[str]) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    done = subprocess.run([sys.executable, "-m", "dinosavi", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env={**env, "COLUMNS": "200"})
    return done.returncode, done.stdout + done.stderr



def test_no_mode_prints_the_help_with_the_overrides(tmp_path):
    """``python -m dinosavi seed=1`` (any override without ``mode=``) prints the help, as no arguments do."""
    code, output = _run_cli(["seed=1", f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 0, output[-2000:]
    assert "usage: python -m dinosavi mode=<mode>" in output and re.search(r"\n  seed +1\n", output)
    assert not (tmp_path / "run").exists()
