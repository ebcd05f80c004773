"""Training: one step of every preset, TensorBoard and checkpoints, exact resume, DDP, failures."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dinosavi.cli.modes import run_train
from dinosavi.training.loading import load_checkpoint
from dinosavi.utils import seed_everything
from tests.cli.test_config import PRESETS
from tests.conftest import compose_config


def _train(root: Path, run_dir: Path, *extra: str) -> Path:
    """Compose the CLI config for ``extra`` on the tiny set and train; returns the final checkpoint."""
    overrides = [
        "mode=train", "encoder=vit_tiny_random", "data=synthetic", f"data.root={root}",
        "data.synthetic.num_videos=4", "data.synthetic.num_frames=6", "data.synthetic.height=64",
        "data.synthetic.width=80", "data.synthetic.val_videos=1", "data.batch_size=2", "data.clips_per_video=2",
        "train.input_size=[64,64]", "train.log_every=1", *extra,
    ]
    cfg = compose_config(*overrides)
    seed_everything(cfg.seed)  # as the CLI entry point does
    return run_train(cfg, run_dir, overrides)


@pytest.mark.parametrize("preset", PRESETS)
def test_one_training_step_per_preset(preset, tiny_synthetic, tmp_path):
    # the tiny videos have 6 frames; 4 frames per clip keep every preset's time steps (t+3 at most)
    path = _train(tiny_synthetic, tmp_path, f"hparam={preset}", "train.max_steps=1", "features.in_memory=false",
                  "data.frames_per_clip=4")
    ckpt = load_checkpoint(path)
    assert ckpt.step == 1
    assert ckpt.config["preset"] == preset
    assert all(torch.isfinite(v).all() for v in ckpt.model.values())
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "config.yaml").is_file()


def test_resume_continues_exactly(tiny_synthetic, tmp_path):
    full = load_checkpoint(_train(tiny_synthetic, tmp_path / "full", "hparam=demo", "train.max_steps=6"))
    _train(tiny_synthetic, tmp_path / "part", "hparam=demo", "train.max_steps=6", "train.save_every=3")
    half = tmp_path / "part" / "checkpoints" / "step-0000003.safetensors"
    assert load_checkpoint(half).step == 3
    resumed = load_checkpoint(_train(tiny_synthetic, tmp_path / "resumed", f"resume={half}"))
    assert resumed.step == 6
    for key, value in full.model.items():
        assert torch.equal(resumed.model[key], value), key


def test_resume_keeps_the_checkpoint_recipe(tiny_synthetic, tmp_path):
    path = _train(tiny_synthetic, tmp_path / "a", "hparam=demo", "train.max_steps=1")
    # resuming with the default preset on the command line still trains the checkpoint's model,
    # and an explicit key on the command line wins
    resumed = _train(tiny_synthetic, tmp_path / "b", f"resume={path}", "train.max_steps=2")
    cfg = OmegaConf.load(tmp_path / "b" / "config.yaml")
    assert cfg.preset == "demo" and cfg.train.max_steps == 2
    assert load_checkpoint(resumed).step == 2


def _tb_scalars(run_dir: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


HEADLINE = "slot-s256d-line-t01-tline-ini5"
SMALL = ["model.slot_dim=32", "model.hidden_dim=64", "model.decoder_hidden_dim=64", "data.frames_per_clip=3"]


def _cli_overrides(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "mode=train", "encoder=vit_tiny_random", "data=synthetic", f"data.root={root}",
        "data.synthetic.num_videos=4", "data.synthetic.num_frames=6", "data.synthetic.height=64",
        "data.synthetic.width=80", "data.synthetic.val_videos=1", "data.clips_per_video=2",
        "train.input_size=[64,64]", "train.log_every=1", f"hydra.run.dir={run_dir}", *extra,
    ]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **extra}


@pytest.mark.slow
def test_ddp_two_processes_follow_one_process(tiny_synthetic, tmp_path):
    common = [f"hparam={HEADLINE}", *SMALL, "train.max_steps=3", "data.batch_size=2", "train.lr=1e-3"]
    _train(tiny_synthetic, tmp_path / "one", *common)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "dinosavi", *_cli_overrides(tiny_synthetic, tmp_path / "two", *common)]
    proc = subprocess.run(cmd, env=_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _tb_scalars(tmp_path / "one", "loss/total"), _tb_scalars(tmp_path / "two", "loss/total")
    assert len(one) == len(two) == 3
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-5, atol=1e-6)
    for key in ("loss/t+0", "loss/t+1"):
        torch.testing.assert_close(torch.tensor(_tb_scalars(tmp_path / "two", key)),
                                   torch.tensor(_tb_scalars(tmp_path / "one", key)), rtol=1e-5, atol=1e-6)
    a = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.safetensors")
    b = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.safetensors")
    for key, value in a.model.items():
        torch.testing.assert_close(b.model[key], value, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_exact(tiny_synthetic, tmp_path):
    common = [f"hparam={HEADLINE}", *SMALL, "train.max_steps=12", "data.batch_size=2", "train.save_every=2"]
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dinosavi", *_cli_overrides(tiny_synthetic, run, *common)],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    last = run / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    killed_at = load_checkpoint(last).step
    assert 2 <= killed_at < 12
    _assert_resume_is_exact(tiny_synthetic, tmp_path, last, common, steps=12)


@pytest.mark.slow
def test_sigterm_saves_and_resume_is_bit_exact(tiny_synthetic, tmp_path):
    """A scheduler's SIGTERM to the whole process group (data-loader worker included) mid-run: a resumable
    checkpoint, exit status 143, and resuming ends with the weights of an uninterrupted run."""
    common = [f"hparam={HEADLINE}", *SMALL, "train.max_steps=8", "data.batch_size=2", "train.save_every=2"]
    run = tmp_path / "stopped"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dinosavi", *_cli_overrides(tiny_synthetic, run, *common, "data.num_workers=1")],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    last = run / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    stopped_at = load_checkpoint(last).step
    assert 2 <= stopped_at < 8, "training ended before the signal"
    assert (run / "checkpoints" / f"step-{stopped_at:07d}.safetensors").is_file()
    log = (run / "dinosavi.log").read_text()
    assert f"received SIGTERM: stopped at step {stopped_at} of 8" in log and "Traceback" not in stderr
    _assert_resume_is_exact(tiny_synthetic, tmp_path, last, common, steps=8)


def _assert_resume_is_exact(root: Path, tmp_path: Path, last: Path, common: list[str], steps: int) -> None:
    """Resuming from ``last`` ends at ``steps`` with the weights and Adam moments of an uninterrupted run."""
    resumed = load_checkpoint(_train(root, tmp_path / "resumed", f"resume={last}"))
    full = load_checkpoint(_train(root, tmp_path / "full", *common))
    assert resumed.step == full.step == steps
    for key, value in full.model.items():
        assert torch.equal(resumed.model[key], value), key
    for key, value in full.optimizer["state"].items():  # type: ignore[index]
        assert torch.equal(resumed.optimizer["state"][key]["exp_avg"], value["exp_avg"])  # type: ignore[index]


def _fail_at(monkeypatch, call: int, make) -> None:
    """Make the ``call``-th clip loss of a run go wrong with ``make(out)``."""
    from dinosavi.models.slot_model import SlotModel

    original = SlotModel.clip_loss
    count = {"n": 0}

    def patched(self, *args, **kwargs):
        count["n"] += 1
        out = original(self, *args, **kwargs)
        return make(out) if count["n"] == call else out

    monkeypatch.setattr(SlotModel, "clip_loss", patched)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_synthetic, tmp_path, monkeypatch):
    def nan(out):
        out.loss = out.loss * float("nan")
        return out

    _fail_at(monkeypatch, 3, nan)
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 3.*last\.safetensors"):
        _train(tiny_synthetic, tmp_path, "hparam=demo", "train.max_steps=5", "train.save_every=2")
    last = load_checkpoint(tmp_path / "checkpoints" / "last.safetensors")
    assert last.step == 2
    assert all(torch.isfinite(v).all() for v in last.model.values())


def test_ctrl_c_saves_and_exits(tiny_synthetic, tmp_path, monkeypatch):
    def interrupt(out):
        raise KeyboardInterrupt

    _fail_at(monkeypatch, 3, interrupt)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_synthetic, tmp_path, "hparam=demo", "train.max_steps=5", "train.save_every=10")
    assert load_checkpoint(tmp_path / "checkpoints" / "last.safetensors").step == 2
    assert (tmp_path / "checkpoints" / "step-0000002.safetensors").is_file()


def test_sigusr1_finishes_the_step_saves_and_exits(tiny_synthetic, tmp_path, monkeypatch):
    """SIGUSR1 (a requeue warning) arriving mid-step: the step finishes, a checkpoint is saved, exit 138."""
    def requeue(out):
        os.kill(os.getpid(), signal.SIGUSR1)  # arrives during the 3rd step's forward pass
        return out

    before = signal.getsignal(signal.SIGUSR1)
    _fail_at(monkeypatch, 3, requeue)
    with pytest.raises(SystemExit) as info:
        _train(tiny_synthetic, tmp_path / "run", "hparam=demo", "train.max_steps=5", "train.save_every=10")
    assert info.value.code == 128 + signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) == before  # the handler is the caller's again
    last = tmp_path / "run" / "checkpoints" / "last.safetensors"
    assert load_checkpoint(last).step == 3
    assert (tmp_path / "run" / "checkpoints" / "step-0000003.safetensors").is_file()
    assert load_checkpoint(last).optimizer is not None  # resumable (that resuming is exact: the SIGTERM test)


def test_bf16_precision_trains_on_cpu(tiny_synthetic, tmp_path):
    path = _train(tiny_synthetic, tmp_path, f"hparam={HEADLINE}", *SMALL, "train.max_steps=2",
                  "train.precision=bf16")
    assert all(torch.isfinite(v).all() for v in load_checkpoint(path).model.values())
    assert set(_tb_scalars(tmp_path, "loss/t+1")) and len(_tb_scalars(tmp_path, "loss/t+0")) == 2


def test_compiled_training_matches_eager_and_saves_the_plain_model(tiny_synthetic, tmp_path):
    """train.compile=<backend> runs the clip loss through torch.compile (``eager``: dynamo's tracing without code
    generation, seconds on CPU); the steps and the checkpoint are those of eager training."""
    eager = load_checkpoint(_train(tiny_synthetic, tmp_path / "eager", f"hparam={HEADLINE}", *SMALL,
                                   "train.max_steps=2"))
    compiled = load_checkpoint(_train(tiny_synthetic, tmp_path / "compiled", f"hparam={HEADLINE}", *SMALL,
                                      "train.max_steps=2", "train.compile=eager"))
    assert compiled.config["train"]["compile"] == "eager" and eager.config["train"]["compile"] is None
    assert set(compiled.model) == set(eager.model)  # no `_orig_mod.` prefix: the plain model is saved
    for key, value in eager.model.items():
        torch.testing.assert_close(compiled.model[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_bgfg_preset_needs_cls_attention(tiny_synthetic, tmp_path):
    with pytest.raises(ValueError, match=r"preset `slot-s256d-bgfg`.*efficientnet_lite0"):
        _train(tiny_synthetic, tmp_path, "hparam=slot-s256d-bgfg", "encoder=efficientnet_lite0",
               "train.max_steps=1", "data.frames_per_clip=4")


def test_headline_preset_trains_on_a_folder_of_mp4_files(tmp_path):
    """Kinetics layout (class sub-folders of .mp4 files) decoded with PyAV at the preset's 8 fps."""
    from tests.data.conftest import write_video

    root = tmp_path / "kinetics"
    for name in ("abseiling/a.mp4", "abseiling/b.mp4", "juggling/c.mp4"):
        write_video(root / name, num_frames=50, fps=25)  # 2 s -> 16 frames at 8 fps
    overrides = [
        "mode=train", f"hparam={HEADLINE}", *SMALL, "encoder=vit_tiny_random", "data=videos", f"data.root={root}",
        "data.batch_size=2", "data.clips_per_video=2", "train.input_size=[48,64]", "train.max_steps=2",
    ]
    cfg = compose_config(*overrides)
    assert cfg.data.frame_rate == 8 and cfg.data.frames_per_clip == 3
    seed_everything(cfg.seed)
    ckpt = load_checkpoint(run_train(cfg, tmp_path / "run", overrides))
    assert ckpt.step == 2 and ckpt.config["data"]["name"] == "videos"
    assert all(torch.isfinite(v).all() for v in ckpt.model.values())


def _video_overrides(root: Path, *extra: str) -> list[str]:
    return [
        "mode=train", f"hparam={HEADLINE}", *SMALL, "encoder=vit_tiny_random", "data=videos", f"data.root={root}",
        "data.batch_size=2", "data.clips_per_video=2", "train.input_size=[48,64]", "train.log_every=1", *extra,
    ]


def _train_videos(run_dir: Path, overrides: list[str]) -> Path:
    cfg = compose_config(*overrides)
    seed_everything(cfg.seed)
    return run_train(cfg, run_dir, overrides)


@pytest.fixture
def broken_videos(tmp_path):
    """A Kinetics-like folder: three good .mp4 files, a truncated one, a zero-byte one and one whose frame
    data is garbled (it opens; decoding fails, so it is found while training)."""
    from tests.data.conftest import write_broken_videos, write_video

    root = tmp_path / "kinetics"
    for name in ("abseiling/a.mp4", "abseiling/b.mp4", "juggling/c.mp4"):
        write_video(root / name, num_frames=50, fps=25)
    return root, write_broken_videos(root / "juggling")


def test_training_skips_broken_video_files_and_remembers_them(broken_videos, tmp_path, monkeypatch, caplog):
    from dinosavi.data.badfiles import BadFileIndex

    root, bad = broken_videos
    data_files = sorted(root.rglob("*"))
    # 4 openable videos x 2 clips / batch 2 = 4 steps per epoch: 6 steps cross into a second epoch
    overrides = _video_overrides(root, "train.max_steps=6", "data.max_bad_fraction=0.6")
    import dinosavi.data.videos as videos

    decoded: list[str] = []
    iter_frames = videos.iter_frames
    monkeypatch.setattr(videos, "iter_frames", lambda path, rate: decoded.append(path.name) or iter_frames(path, rate))
    with caplog.at_level(logging.WARNING):
        first = load_checkpoint(_train_videos(tmp_path / "first", overrides))
    assert first.step == 6
    for path in bad.values():
        assert f"skipping unreadable file {path}" in caplog.text
    assert decoded.count("garbled.mp4") == 1  # found bad once, not retried in the next epoch
    assert _tb_scalars(tmp_path / "first", "data/skipped_videos")[-1] == 3
    listing = BadFileIndex(root).location  # in the cache folder, keyed by the dataset
    listed = json.loads(listing.read_text())["files"]
    assert sorted(listed) == ["juggling/empty.mp4", "juggling/garbled.mp4", "juggling/truncated.mp4"]
    assert sorted(root.rglob("*")) == data_files  # nothing of ours in the dataset folder

    # bad files found in a data-loader worker reach the main process the same way
    listing.unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        workers = load_checkpoint(_train_videos(tmp_path / "workers", [*overrides, "data.num_workers=1"]))
    assert f"skipping unreadable file {bad['garbled']}" in caplog.text
    assert _tb_scalars(tmp_path / "workers", "data/skipped_videos")[-1] == 3

    # a later run reads the list: the broken files are neither opened nor decoded, and the clips are the same
    decoded.clear()
    probed: list[str] = []
    probe = videos.probe_length
    monkeypatch.setattr(videos, "probe_length", lambda path, rate: probed.append(path.name) or probe(path, rate))
    listed_run = load_checkpoint(_train_videos(tmp_path / "listed", overrides))
    assert "garbled.mp4" not in decoded and "empty.mp4" not in probed and "truncated.mp4" not in probed
    for key, value in first.model.items():
        assert torch.equal(workers.model[key], value) and torch.equal(listed_run.model[key], value), key


def test_too_many_broken_files_stop_training_with_a_clear_error(broken_videos, tmp_path):
    root, bad = broken_videos
    with pytest.raises(ValueError, match=r"2 of the 6 videos .* data.max_bad_fraction=0.01") as info:
        _train_videos(tmp_path / "start", _video_overrides(root, "train.max_steps=2"))
    assert str(bad["empty"]) in str(info.value) and str(bad["truncated"]) in str(info.value)
    # found while training: a resumable checkpoint, then the error
    bad["empty"].unlink()
    bad["truncated"].unlink()
    with pytest.raises(ValueError, match=r"1 of the 4 videos .*garbled\.mp4.*training stopped at step \d+ "
                                         r"\(continue with resume=.*last\.safetensors\)"):
        _train_videos(tmp_path / "run", _video_overrides(root, "train.max_steps=6", "data.max_bad_fraction=0.2"))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors").step >= 1


def _lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return lrs


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


@pytest.mark.parametrize("pct_start", [0.0, 0.05, 0.1, 0.3, 0.5, 1.0])
def test_no_step_count_crashes_the_schedule(pct_start):
    from dinosavi.training.loop import one_cycle
    from dinosavi.training.options import warmup_steps

    for max_steps in range(1, 61):  # torch's own OneCycleLR divides by zero at 10 x 0.1, 20 x 0.05, 1 x 1.0, ...
        lrs = _lrs(one_cycle(_optimizer(), 1e-3, max_steps, pct_start), max_steps)
        assert all(0 < lr <= 1e-3 for lr in lrs), (max_steps, lrs)
        warmup = warmup_steps(max_steps, pct_start)
        peak = max(range(max_steps), key=lrs.__getitem__)
        assert peak == max(warmup - 1, 0), (max_steps, pct_start, lrs)  # the peak at the last warm-up step
        if warmup:
            assert lrs[warmup - 1] == pytest.approx(1e-3)


@pytest.mark.parametrize(("max_steps", "pct_start"), [(2000, 0.1), (30000, 0.1), (10000, 0.05), (1000, 0.05),
                                                    (300, 0.1), (3000, 0.1)])  # 0.1 x 300 = 30.000000000000004
def test_ordinary_runs_keep_torchs_schedule_bit_for_bit(max_steps, pct_start):
    """The presets' step counts (demo 2000, the original's 30000, dinosaur 10000, the schema's 1000), and whole
    warm-ups that float rounding makes inexact."""
    from dinosavi.training.loop import one_cycle

    ours = one_cycle(_optimizer(), 4e-4, max_steps, pct_start)
    torchs = torch.optim.lr_scheduler.OneCycleLR(_optimizer(), max_lr=4e-4, total_steps=max_steps,
                                                 pct_start=pct_start)
    assert _lrs(ours, max_steps) == _lrs(torchs, max_steps)
    assert ours.state_dict() == torchs.state_dict()


def test_ten_steps_train(tiny_synthetic, tmp_path):
    """``train.max_steps=10``, the count a newcomer picks, with a preset whose ``pct_start`` is 0.1."""
    path = _train(tiny_synthetic, tmp_path, "hparam=demo", "train.max_steps=10")
    assert load_checkpoint(path).step == 10


def test_in_memory_training_starts_without_encoding_the_set(tiny_synthetic, tmp_path, monkeypatch):
    """``features.in_memory`` (the demo preset's) encodes only the frames its steps draw: one step of 2 clips x
    3 frames encodes at most 6 frames, not the 18 of the training set."""
    from dinosavi.encoders.base import FrozenEncoder

    encoded: list[int] = []
    encode = FrozenEncoder.encode
    monkeypatch.setattr(FrozenEncoder, "encode",
                        lambda self, frames, *args, **kwargs: encoded.append(len(frames)) or encode(self, frames, *args,
                                                                                                    **kwargs))
    _train(tiny_synthetic, tmp_path, "hparam=demo", "features.in_memory=true", "train.max_steps=1")
    assert 0 < sum(encoded) <= 6
