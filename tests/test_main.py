"""The CLI on bad input: every mode, one clear error naming the file or key, a non-zero exit, and no
partial output; help and configuration errors answer without importing torch. Most cases run in this
process through the real entry point (``runpy``, as ``python -m dinosavi`` does); a representative few
run ``python -m dinosavi`` in a subprocess."""

from __future__ import annotations

import logging
import os
import re
import runpy
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from dinosavi.data.davis import read_palette_png, write_palette_png
from tests.conftest import REPO_ROOT, compose_config

KEPT = {"config.yaml", "dinosavi.log"}  # what a failed run may leave in its run directory (and .hydra/)


@dataclass
class Inputs:
    """A DAVIS-layout folder with one broken split per case, checkpoints, and paths that do not exist."""

    davis: Path
    results: Path
    vit: Path
    cnn: Path
    foreign: Path
    not_safetensors: Path
    missing: Path
    video: Path
    videos: Path


def _broken_copy(root: Path, source: str, name: str) -> tuple[Path, Path]:
    """Copy sequence ``source`` as ``name`` and add split ``name``: a good sequence first, then it."""
    for kind in ("JPEGImages", "Annotations"):
        shutil.copytree(root / kind / "480p" / source, root / kind / "480p" / name)
    (root / "ImageSets" / "2017" / f"{name}.txt").write_text(f"synth-0000\n{name}\n")
    return root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name


def _checkpoint(path: Path, encoder: str) -> Path:
    from dinosavi.cli.build import build_encoder
    from dinosavi.models.factory import build_model
    from dinosavi.training.checkpoint import save_checkpoint

    cfg = compose_config("mode=train", f"encoder={encoder}", "hparam=demo")
    model = build_model(cfg.model, build_encoder(cfg.encoder).feature_dim)
    return save_checkpoint(path, model, OmegaConf.to_container(cfg, resolve=True), 0)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def inputs(tiny_synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    from safetensors.torch import save_file
    from torch import zeros

    base = tmp_path_factory.mktemp("bad-inputs")
    root = base / "davis"
    shutil.copytree(tiny_synthetic, root)
    (root / "ImageSets" / "2017" / "empty.txt").write_text("\n")
    frames, _ = _broken_copy(root, "synth-0001", "hollow")
    for frame in frames.iterdir():
        frame.unlink()
    _, masks = _broken_copy(root, "synth-0001", "wrongsize")
    labels, palette = read_palette_png(masks / "00003.png")
    write_palette_png(masks / "00003.png", np.zeros((labels.shape[0] + 8, labels.shape[1]), np.uint8), palette)
    _, masks = _broken_copy(root, "synth-0001", "rgbmask")
    Image.open(masks / "00002.png").convert("RGB").save(masks / "00002.png")
    frames, _ = _broken_copy(root, "synth-0001", "corrupt")
    (frames / "00004.jpg").write_bytes((frames / "00004.jpg").read_bytes()[:300])
    results = base / "results"
    shutil.copytree(root / "Annotations" / "480p", results)
    foreign = base / "foreign.safetensors"
    save_file({"weight": zeros(2)}, str(foreign), metadata={"format": "pt"})
    not_safetensors = base / "notes.safetensors"
    not_safetensors.write_text("not a checkpoint")
    from dinosavi.data.davis import read_frames
    from dinosavi.viz.video import write_video

    frames = read_frames(sorted((root / "JPEGImages" / "480p" / "synth-0000").glob("*.jpg")))
    video = write_video(base / "clip.mp4", (f.permute(1, 2, 0).numpy() for f in frames))  # 80x64 (WxH)
    videos = base / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mkv"):
        shutil.copy(video, videos / name)
    return Inputs(root, results, _checkpoint(base / "vit.safetensors", "vit_tiny_random"),
                  _checkpoint(base / "cnn.safetensors", "efficientnet_lite0"), foreign, not_safetensors,
                  base / "missing", video, videos)


TRAIN = ("mode=train", "encoder=vit_tiny_random", "data=davis", "train.input_size=[64,64]", "data.batch_size=2",
         "train.max_steps=1")
EVAL = ("eval.short_side=64", "eval.videos=false", "device=cpu")

# id: (arguments, with {davis}, {vit}, ... filled from Inputs; the pattern the message must match, which
# holds the file or key it must name).
CASES: dict[str, tuple[tuple[str, ...], str]] = {
    "train-missing-root": ((*TRAIN, "data.root={missing}"), r"data\.root={missing} is not a folder"),
    "train-videos-missing-root": (("mode=train", "data=videos", "data.root={missing}"),
                                  r"data\.root={missing} is not a folder \(data=videos\)"),
    "train-empty-split": ((*TRAIN, "data.root={davis}", "data.split=empty"),
                          r"{davis}/ImageSets/2017/empty\.txt lists no"),
    "train-sequence-without-frames": ((*TRAIN, "data.root={davis}", "data.split=hollow"),
                                      r"No \.jpg frames in {davis}/JPEGImages/480p/hollow"),
    "train-missing-resume": ((*TRAIN, "data.root={davis}", "resume={missing}.safetensors"),
                             r"checkpoint not found: {missing}\.safetensors"),
    "train-foreign-resume": ((*TRAIN, "data.root={davis}", "resume={foreign}"),
                             r"{foreign} is not a dinosavi checkpoint"),
    "train-bad-fraction": ((*TRAIN, "data.root={davis}", "data.max_bad_fraction=2"),
                           r"data\.max_bad_fraction must lie in \[0, 1\], got 2"),
    "unknown-encoder": ((*TRAIN, "data.root={davis}", "encoder.name=vit_huge_dream"),
                        r"Unknown encoder `vit_huge_dream`"),
    "unknown-encoder-option": (("mode=train", "encoder=vit_huge_dream"), r"'encoder/vit_huge_dream'"),
    "unknown-preset": (("mode=train", "hparam=slot-s9000d"), r"'hparam/slot-s9000d'"),
    "unknown-mode": (("mode=segmnet",), r"'mode/segmnet'"),
    "unknown-key": (("mode=train", "train.max_stpes=3"), r"max_stpes"),
    "eval-missing-root": (("mode=eval", "resume={vit}", "data.root={missing}", *EVAL), r"data\.root={missing} is not"),
    "eval-empty-split": (("mode=eval", "resume={vit}", "data.root={davis}", "data.split=empty", *EVAL),
                         r"{davis}/ImageSets/2017/empty\.txt lists no sequences"),
    "eval-sequence-without-frames": (("mode=eval", "resume={vit}", "data.root={davis}", "data.split=hollow", *EVAL),
                                     r"No \.jpg frames in {davis}/JPEGImages/480p/hollow"),
    "eval-wrong-size-mask": (("mode=eval", "resume={vit}", "data.root={davis}", "data.split=wrongsize", *EVAL),
                             r"Annotation {davis}/Annotations/480p/wrongsize/00003\.png is 80x72 .*expected equal"),
    "eval-rgb-mask": (("mode=eval", "resume={vit}", "data.root={davis}", "data.split=rgbmask", *EVAL),
                      r"Annotation {davis}/Annotations/480p/rgbmask/00002\.png has PIL mode 'RGB'"),
    "eval-corrupt-frame": (("mode=eval", "resume={vit}", "data.root={davis}", "data.split=corrupt", *EVAL),
                           r"Cannot read image {davis}/JPEGImages/480p/corrupt/00004\.jpg"),
    "eval-no-resume": (("mode=eval", "data.root={davis}"), r"mode=eval needs resume="),
    "eval-missing-resume": (("mode=eval", "resume={missing}.safetensors", "data.root={davis}"),
                            r"checkpoint not found: {missing}\.safetensors"),
    "eval-garbage-resume": (("mode=eval", "resume={not_safetensors}", "data.root={davis}"),
                            r"{not_safetensors} is not a readable safetensors checkpoint"),
    "eval-extra-slots-cnn": (("mode=eval", "resume={cnn}", "data.root={davis}", "eval.num_extra_slots=2", *EVAL),
                             r"eval\.num_extra_slots needs the CLS-attention .*=2\); encoder `efficientnet_lite0`"),
    "propagate-rgb-mask": (("mode=propagate", "encoder=vit_tiny_random", "data.root={davis}", "data.split=rgbmask",
                            "propagate.short_side=64", *EVAL), r"{davis}/Annotations/480p/rgbmask/00002\.png has PIL"),
    "propagate-missing-root": (("mode=propagate", "encoder=vit_tiny_random", "data.root={missing}"),
                               r"data\.root={missing} is not a folder"),
    "cache-missing-root": (("mode=cache", "encoder=vit_tiny_random", "data=davis", "data.root={missing}",
                            "features.store={missing}-store"), r"data\.root={missing} is not a folder"),
    "cache-no-store": (("mode=cache", "encoder=vit_tiny_random", "data=davis", "data.root={davis}"),
                       r"mode=cache needs features\.store="),
    "segment-wrong-size-mask": (("mode=segment", "input={video}", "resume={cnn}",
                                 "first_mask={davis}/Annotations/480p/wrongsize/00003.png", *EVAL),
                                r"first_mask={davis}/Annotations/480p/wrongsize/00003\.png is 80x72 \(WxH\) but the "
                                r"frames of {video} are 80x64"),
    "propagate-video-wrong-size-mask": (("mode=propagate", "input={video}", "encoder=vit_tiny_random",
                                         "first_mask={davis}/Annotations/480p/wrongsize/00003.png", *EVAL),
                                        r"first_mask={davis}/Annotations/480p/wrongsize/00003\.png is 80x72"),
    "segment-rgb-mask": (("mode=segment", "input={video}", "resume={cnn}",
                          "first_mask={davis}/Annotations/480p/rgbmask/00002.png", *EVAL),
                         r"{davis}/Annotations/480p/rgbmask/00002\.png has PIL mode 'RGB'"),
    "segment-corrupt-frame": (("mode=segment", "input={davis}/JPEGImages/480p/corrupt", "resume={cnn}",
                               "segment.chunk_frames=2", *EVAL),  # frames 0-3 are written, then removed
                              r"Cannot read image {davis}/JPEGImages/480p/corrupt/00004\.jpg"),
    "segment-missing-input": (("mode=segment", "input={missing}.mp4", "resume={cnn}"),
                              r"input={missing}\.mp4 does not exist; expected a video file"),
    "segment-no-input": (("mode=segment", "resume={cnn}"), r"mode=segment needs input="),
    "segment-no-resume": (("mode=segment", "input={video}"), r"mode=segment needs resume=<checkpoint"),
    "segment-propagate-no-mask": (("mode=segment", "method=propagate", "input={video}", "encoder=vit_tiny_random"),
                                  r"method=propagate needs first_mask="),
    "segment-mask-many-videos": (("mode=segment", "input={videos}", "resume={cnn}",
                                  "first_mask={davis}/Annotations/480p/synth-0000/00000.png"),
                                 r"first_mask=.*00000\.png is the mask of one video, but input={videos} holds 2"),
    "segment-mask-with-start": (("mode=segment", "input={video}", "resume={cnn}", "segment.start=2",
                                 "first_mask={davis}/Annotations/480p/synth-0000/00000.png"),
                                r"first_mask=.*00000\.png with segment\.start=2: first_mask is the mask of the first "
                                r"frame processed"),
    "segment-unknown-method": (("mode=segment", "method=kmeans", "input={video}"), r"Unknown method `kmeans`"),
    "segment-bad-range": (("mode=segment", "input={video}", "resume={cnn}", "segment.start=5", "segment.stop=2"),
                          r"segment\.start=5, segment\.stop=2: expected 0 <= start < stop"),
    "score-rgb-mask": (("mode=score", "results={results}", "data.root={davis}", "data.split=rgbmask"),
                       r"{davis}/Annotations/480p/rgbmask/00002\.png has PIL mode 'RGB'"),
    "score-wrong-size-mask": (("mode=score", "results={results}", "data.root={davis}", "data.split=wrongsize"),
                              r"{davis}/Annotations/480p/wrongsize/00003\.png is 80x72"),
}
SUBPROCESS = {"eval-wrong-size-mask", "unknown-mode", "segment-wrong-size-mask"}  # through `python -m dinosavi` itself


def _fill(text: str, inputs: Inputs, escape: bool = False) -> str:
    values = {k: str(v) for k, v in vars(inputs).items()}
    return text.format(**{k: re.escape(v) if escape else v for k, v in values.items()})


def _run_in_process(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                    ) -> tuple[int, str]:
    """``python -m dinosavi <args>`` in this process: exit status and everything printed."""
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setattr(sys, "argv", ["dinosavi", *args])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)  # Hydra's usual report: the message, exit 1
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    capsys.readouterr()
    try:
        runpy.run_module("dinosavi", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        for handler in set(root.handlers) - set(handlers):  # Hydra's run-dir log file and console
            handler.close()
        root.handlers[:], root.level = handlers, level
        GlobalHydra.instance().clear()
    out = capsys.readouterr()
    return code, out.out + out.err


def _run_cli(args: list[str]) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    done = subprocess.run([sys.executable, "-m", "dinosavi", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env={**env, "COLUMNS": "200"})
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_error(case, inputs, tmp_path, capsys, monkeypatch):
    template, pattern = CASES[case]
    run_dir = tmp_path / "run"
    args = [_fill(a, inputs) for a in template] + [f"hydra.run.dir={run_dir}"]
    if case in SUBPROCESS:
        code, output = _run_cli(args)
    else:
        code, output = _run_in_process(args, capsys, monkeypatch)
    assert code != 0, output[-2000:]
    assert re.search(_fill(pattern, inputs, escape=True), output), output[-3000:]
    left = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()} if run_dir.exists() else set()
    assert {p for p in left if not p.startswith(".hydra/")} <= KEPT, f"partial output left behind: {sorted(left)}"
    assert not list(inputs.results.glob("*.csv")) and not list(inputs.results.glob("*.json"))
    assert not (inputs.davis / ".dinosavi-bad-files.json").exists()


def test_no_mode_prints_the_help_with_the_overrides(tmp_path):
    """``python -m dinosavi seed=1`` (any override without ``mode=``) prints the help, as no arguments do."""
    code, output = _run_cli(["seed=1", f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 0, output[-2000:]
    assert "usage: python -m dinosavi mode=<mode>" in output and re.search(r"\n  seed +1\n", output)
    assert not (tmp_path / "run").exists()


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
