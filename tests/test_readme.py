"""The README's Python example runs as written (on a tiny set, for a few steps)."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def test_the_python_api_example_runs(tiny_synthetic, tmp_path, capsys):
    readme = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"### From Python\n.*?```python\n(.*?)```", readme, re.S)
    assert block is not None, "README lost its Python example"
    code = block.group(1)
    line = 'root, size, steps, out = "data/synthetic-demo", (192, 256), 500, Path("outputs/python-api")'
    assert line in code
    code = code.replace(line, f'root, size, steps, out = "{tiny_synthetic}", (64, 80), 2, Path("{tmp_path}")')
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    checkpoint, fg_ari, mbo = capsys.readouterr().out.strip().splitlines()[-1].rsplit(" ", 2)
    assert checkpoint.endswith("step-0000002.safetensors")
    assert -1.0 <= float(fg_ari) <= 1.0 and 0.0 <= float(mbo) <= 1.0
    assert (tmp_path / "eval" / "discovery-val.json").is_file()
