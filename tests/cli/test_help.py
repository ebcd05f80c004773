"""mode=help lists every mode, every preset and the main options."""

from __future__ import annotations

from dinosavi.cli.config import MODES
from dinosavi.cli.help import CONF_DIR, print_help


def test_help_lists_modes_presets_and_options(capsys):
    print_help(["hparam=demo", "seed=5"])
    out = capsys.readouterr().out
    for mode in MODES:
        assert f"  {mode} " in out
    for preset in (CONF_DIR / "hparam").glob("*.yaml"):
        assert f"  {preset.stem} " in out
    assert "[original] " in out and "[ours] " in out
    assert "  seed" in out and out.split("  seed", 1)[1].split()[0] == "5"  # current values
