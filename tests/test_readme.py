"""The README runs as written: its Python example (on a tiny set, for a few steps), and every command of its
``bash`` blocks, walked in order in an empty folder beside ``../shared``, shortened by the overrides the README
documents ("This README is tested"); commands marked ``[gpu]``, ``[network]`` or ``[skip: ...]`` are skipped,
each skip stated. The walk runs under umask 022 and ends by checking that every file it wrote is 0644."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import DAVIS_SAMPLE, REPO_ROOT, SEED_REFERENCE

README = (REPO_ROOT / "README.md").read_text()


def test_the_python_api_example_runs(tiny_synthetic, tmp_path, capsys):
    block = re.search(r"### From Python\n.*?```python\n(.*?)```", README, re.S)
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


# --- the walk ---------------------------------------------------------------------------------------------

MARKS = {"gpu": "needs a CUDA GPU", "network": "needs the network (hub weights, the Hugging Face Hub)"}
# what the walk appends, by mode (documented in the README's "This README is tested"; a later value wins)
SHORTER = {
    "train": "train.max_steps=2 data.batch_size=2",
    "train resume": "train.max_steps=3 data.batch_size=2",
    "cache": "features.resolutions=[train]",
    "eval": "data.stop=4",
    "eval ytvis": "data.stop=6",  # eval=videosaur scores 6-frame clips
    "propagate": "data.stop=4",
    "score": "data.stop=4",
    "segment": "segment.stop=<first frame + 4>",
    "demo": ("data.root=data/synthetic-walk data.synthetic.num_videos=4 data.synthetic.val_videos=1 "
             "data.synthetic.num_frames=6 data.synthetic.height=64 data.synthetic.width=80 "
             "train.input_size=[64,80] data.batch_size=4 train.max_steps=2 eval.short_side=64 "
             "demo.davis_root=davis-walk demo.davis_short_side=64 demo.natural_root=davis-walk demo.natural_steps=2 "
             "demo.natural_input_size=[64,112] demo.natural_clips_per_video=4"),
}


@dataclass
class Command:
    """One command of a ``bash`` block: its text (continuation lines kept), the shell assignments before it in
    its block, and why it is skipped (None: it runs)."""

    text: str
    block: int
    assignments: list[str] = field(default_factory=list)
    skip: str | None = None

    @property
    def name(self) -> str:
        return f"{self.block}:{' '.join(self.text.split()[:5])[:70]}"


def _complete(text: str) -> bool:
    if text.endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on
        return False
    return True


def _skip(text: str) -> str | None:
    comment = text.splitlines()[-1].partition(" #")[2]
    reasons = [MARKS.get(mark) or mark.removeprefix("skip: ")
               for mark in re.findall(r"\[(gpu|network|skip: [^\]]+)\]", comment)]
    return "; ".join(reasons) or None


def readme_commands(readme: str) -> list[Command]:
    """Every command of the README's ``bash`` blocks, in order."""
    commands = []
    for number, block in enumerate(re.findall(r"```bash\n(.*?)```", readme, re.S), start=1):
        assignments: list[str] = []
        pending = ""
        for line in block.splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending = f"{pending}\n{line}" if pending else line
            if not _complete(pending):
                continue
            text, pending = pending, ""
            if re.fullmatch(r"[A-Za-z_]\w*=\S+", text.strip()):
                assignments.append(text.strip())
            else:
                commands.append(Command(text, number, list(assignments), _skip(text)))
    return commands


COMMANDS = readme_commands(README)


def test_the_walk_finds_the_commands_and_the_documented_overrides():
    names = [c.text.split()[0] for c in COMMANDS]
    assert names.count("make") == 3 and "torchrun" in names and len(COMMANDS) >= 20
    assert {c.skip for c in COMMANDS if c.skip} == {"the suite that walks this README",
                                                   "the suite runs in the .venv it made", MARKS["network"],
                                                   MARKS["gpu"], f"{MARKS['gpu']}; {MARKS['network']}"}
    skipped = [c.text for c in COMMANDS if c.skip]
    for start in ("make test", "make install", ".venv/bin/python benchmarks/bench_gpu.py"):
        assert any(text.startswith(start) for text in skipped), start
    walked = [c.text for c in COMMANDS if not c.skip]
    for part in ("mode=export", "resume=my-model", "eval=videosaur", "eval=slotcontrast"):
        assert any(part in text for text in walked), part
    section = README[README.index("## This README is tested"):]
    for overrides in SHORTER.values():
        assert all(f"`{o}`" in section or o in section for o in overrides.split()), overrides


@dataclass
class Walk:
    """The folder the commands run in (``work``, beside ``shared``) and their environment."""

    work: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory, tiny_synthetic: Path) -> Walk:
    base = tmp_path_factory.mktemp("readme-walk")
    (base / "shared" / "data").mkdir(parents=True)
    (base / "shared" / "data" / "davis-sample").symlink_to(DAVIS_SAMPLE)
    (base / "shared" / "seed-reference").symlink_to(SEED_REFERENCE)
    work = base / "work"
    work.mkdir()
    movi = work / "movi_c" / "validation"  # /data/movi_c: a MOVi-layout copy of the tiny synthetic val set
    for name in (tiny_synthetic / "ImageSets" / "2017" / "val.txt").read_text().split():
        shutil.copytree(tiny_synthetic / "JPEGImages" / "480p" / name, movi / "rgb" / name)
        shutil.copytree(tiny_synthetic / "Annotations" / "480p" / name, movi / "seg" / name)
    davis = work / "davis-walk"  # make demo's DAVIS and natural frames: the first 6 frames of one sample sequence
    (davis / "ImageSets" / "2017").mkdir(parents=True)
    for split in ("val", "train"):
        (davis / "ImageSets" / "2017" / f"{split}.txt").write_text("blackswan\n")
    for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        (davis / kind / "480p" / "blackswan").mkdir(parents=True)
        for t in range(6):
            shutil.copy(DAVIS_SAMPLE / kind / "480p" / "blackswan" / f"{t:05d}.{ext}",
                        davis / kind / "480p" / "blackswan" / f"{t:05d}.{ext}")
    from tests.data.ytvis_sample import write_ytvis

    write_ytvis(work / "ytvis-walk")  # <root> of the YouTube-VIS commands
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", COLUMNS="120")
    return Walk(work, env)


def _newest(paths: list[Path], what: str) -> Path:
    assert paths, f"no {what} made by the commands before"
    return max(paths, key=lambda p: p.stat().st_mtime)


def _fill(text: str, work: Path) -> str:
    """The placeholders, filled in with what the earlier commands made."""
    for folder in set(re.findall(r"outputs/([\w.-]+)/<timestamp>", text)):
        runs = sorted(p.name for p in (work / "outputs" / folder).iterdir())
        text = text.replace(f"outputs/{folder}/<timestamp>", f"outputs/{folder}/{runs[-1]}")
    if re.search(r"<(checkpoint|ckpt)>", text):
        ckpt = _newest(list(work.glob("outputs/*/*/checkpoints/last.safetensors")), "checkpoint")
        text = re.sub(r"<(checkpoint|ckpt)>", str(ckpt.relative_to(work)), text)
    if "path/to/results" in text:
        runs = [p.parent.parent for p in work.glob("outputs/*/*/results/blackswan")]
        text = text.replace("path/to/results", str(_newest(runs, "run with DAVIS results").relative_to(work)))
    text = text.replace("<DAVIS>", "../shared/data/davis-sample").replace("/data/movi_c", "movi_c")
    return text.replace("<root>", "ytvis-walk")


def _shortened(text: str) -> str:
    """The command with the documented overrides appended (its trailing comment dropped)."""
    lines = text.splitlines()
    lines[-1] = lines[-1].partition(" #")[0].rstrip()
    command = "\n".join(lines)
    if command.startswith("make demo"):
        return (f"make -f {shlex.quote(str(REPO_ROOT / 'Makefile'))} -o install demo "
                f"PY={shlex.quote(sys.executable)} ARGS={shlex.quote(SHORTER['demo'])}")
    if "-m dinosavi" not in command:
        return command
    mode = re.search(r"\bmode=(\w+)", command)
    assert mode is not None, command
    args = dict(a.split("=", 1) for a in shlex.split(command, comments=True) if "=" in a)
    if mode[1] == "segment" or (mode[1] == "propagate" and "input" in args):
        first = int(args.get("segment.first_mask_frame") or args.get("segment.start") or 0)
        return f"{command} segment.stop={first + 4}"
    if mode[1] == "train":
        return f"{command} {SHORTER['train resume' if 'resume' in args else 'train']}"
    if mode[1] == "eval" and args.get("data") == "ytvis":
        return f"{command} {SHORTER['eval ytvis']}"
    return f"{command} {SHORTER[mode[1]]}" if mode[1] in SHORTER else command


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_every_readme_command_runs(command: Command, walk: Walk) -> None:
    if command.skip:
        pytest.skip(f"README marks it: {command.skip}")
    script = "\n".join(["set -e", "umask 022", *command.assignments, _shortened(_fill(command.text, walk.work))])
    done = subprocess.run(["bash", "-c", script], cwd=walk.work, env=walk.env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{script}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


@pytest.mark.slow
def test_the_walk_wrote_only_shareable_files(walk: Walk) -> None:
    """Under umask 022 every file the commands wrote (checkpoints, PNGs, MP4s, report.html, config.yaml, CSVs, the
    exported model folder) is 0644, and nothing of ours went into the data folders."""
    exported = sorted(p.name for p in (walk.work / "my-model").iterdir())
    assert exported == ["README.md", "config.json", "model.safetensors"], exported
    written = [p for folder in ("outputs", "my-model") for p in (walk.work / folder).rglob("*") if p.is_file()]
    assert len(written) > 100
    modes = {p.relative_to(walk.work).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in written}
    assert {m for m in modes.values()} == {"0o644"}, {p: m for p, m in modes.items() if m != "0o644"}
    kinds = {p.suffix for p in written}
    assert {".safetensors", ".png", ".jpg", ".mp4", ".html", ".yaml", ".csv", ".json"} <= kinds
    assert not list(walk.work.rglob(".dinosavi-bad-files.json"))
