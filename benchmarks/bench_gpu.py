"""Everything a GPU user waits on, in one command that fits in 8 minutes on one H100/H200.

Six parts, in this order; each runs in its own process with a time cap (a crash, a CUDA error or a hang is
recorded and the next part still runs), and each writes what it measured as it goes:

1. ``env``: device, torch/CUDA/cuDNN/NCCL versions, TF32 flags, the SDPA backends that run, the peak FLOPS.
2. ``train``: the training step of ``hparam=slot-s256d-line-t01-tline-ini5`` on a ViT-S/8 of DINO's shape
   (``encoder=dino_vits8_random``: random weights, no download) at 224x224, built as ``mode=train`` builds it
   and timed through :meth:`dinosavi.training.loop.Trainer.step` (features of the batch, clip loss under the
   precision's autocast, backward, clipping, Adam, OneCycle): from cached features (``features.in_memory``)
   and with online encoding; ``train.precision=fp32``, ``bf16`` and ``bf16`` + ``train.compile=inductor``;
   at the preset's batch (16 clips of 8 frames) and at the largest batch that fits (doubled until out of
   memory). Batches come from the trainer's own DataLoader (pinned), prefetched, so the loader is not timed.
3. ``encoders``: ViT-S/8 and ViT-B/8 at 480p (480x854 frames, short side 480, long side 848), our wrapper
   (:class:`dinosavi.encoders.vit.TimmViT`: SDPA, CLS attention recomputed) vs. timm's bare
   ``forward_features`` of the same model on the same input, in the same run; frames/s, the ratio, the share
   of FLOPs (SDPA; its bmm on CPU) and of time (``aten::scaled_dot_product_attention``, torch profiler) in attention.
4. ``eval``: ``mode=eval`` lock-on at 480p (the untrained headline model: frames/s end to end, decoding to
   scores and PNGs), ``mode=propagate`` (DINO's protocol, 480p) and ``mode=score`` of the lock-on PNGs, on the
   DAVIS sample (``--davis-root``), or on a synthetic set generated at 480x854 when it is absent (said so).
5. ``ddp``: ``torchrun --nproc_per_node=<GPUs>`` with NCCL: the training step (cached features, bf16, the
   preset's batch per GPU) for a few steps; steps/s and clips/s per GPU against one GPU in part 2. Skipped,
   with the reason, on one GPU or without NCCL (on CPU, ``--smoke`` runs 2 gloo processes).
6. ``learning``: the demo recipe (``hparam=demo``, ``encoder=efficientnet_lite0``) at stride 8 on 384x512
   synthetic frames (48x64 features; the CPU curve: stride 16, 192x256, 12x16), trained for 3 minutes
   (what the budget leaves), with ``benchmarks/bench_learning.py``'s curve (its functions, imported):
   unsupervised FG-ARI/mBO and lock-on J&F against steps, beside k-means and propagation, and the CPU curve
   of ``benchmarks/RESULTS.md``.

MFU = FLOPs of one step x steps/s / the device's peak. FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` on one eager step (matmuls, convolutions, attention; forward
and backward; the encoder's forward with online encoding; not the optimizer's elementwise work) and scale
with the batch. The peak is :data:`PEAKS`' entry for the device (dense tensor-core TFLOPS): bf16 for
``bf16``, TF32 for ``fp32`` when ``torch.backends.cuda.matmul.allow_tf32`` is on, else FP32.

Writes ``<out>/bench_gpu.json`` and ``<out>/bench_gpu.md`` (per part: ``<out>/<part>.json`` and its log);
``--record`` appends the Markdown to ``benchmarks/RESULTS.md`` (CUDA runs only; ``--from-json`` records a run
fetched from elsewhere).

    python benchmarks/bench_gpu.py --davis-root data/davis-sample --record   # on the GPU, < 8 min
    python benchmarks/bench_gpu.py --smoke --device cpu                        # tiny sizes; the test
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESET = "slot-s256d-line-t01-tline-ini5"
TRAIN_ENCODER = "dino_vits8_random"
ENCODERS = {"ViT-S/8": "vit_small_patch8_224.dino", "ViT-B/8": "vit_base_patch8_224.dino"}
PARTS = ("env", "train", "encoders", "eval", "ddp", "learning")
DAVIS_SAMPLE = Path(os.environ.get("DINOSAVI_DAVIS_SAMPLE", ROOT.parent / "shared" / "data" / "davis-sample"))


@dataclass(frozen=True)
class Peak:
    """Dense peak TFLOPS of one GPU (NVIDIA's datasheets at boost clock; sparsity figures halved)."""

    bf16: float
    tf32: float
    fp32: float


#: Device-name pattern -> peak; the first match wins (``torch.cuda.get_device_name``: "NVIDIA H100 80GB HBM3"
#: is the SXM part, "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA A100-SXM4-80GB", ...).
PEAKS: tuple[tuple[str, str, Peak], ...] = (
    (r"GH200", "GH200", Peak(989.5, 494.5, 67.0)),
    (r"H200 NVL", "H200 NVL", Peak(835.5, 417.5, 60.0)),
    (r"H200", "H200 SXM", Peak(989.5, 494.5, 67.0)),
    (r"H100 NVL", "H100 NVL", Peak(835.5, 417.5, 60.0)),
    (r"H100 PCIe", "H100 PCIe", Peak(756.5, 378.0, 51.0)),
    (r"H100", "H100 SXM", Peak(989.5, 494.5, 67.0)),
    (r"A100", "A100", Peak(312.0, 156.0, 19.5)),
    (r"L40S", "L40S", Peak(362.0, 183.0, 91.6)),
    (r"L40\b", "L40", Peak(181.0, 90.5, 90.5)),
    (r"L4\b", "L4", Peak(121.0, 60.0, 30.3)),
    (r"A10\b", "A10", Peak(125.0, 62.5, 31.2)),
)


def find_peak(name: str) -> tuple[str, Peak] | None:
    """The :data:`PEAKS` entry of a device name, or None."""
    for pattern, label, peak in PEAKS:
        if re.search(pattern, name):
            return label, peak
    return None


@dataclass(frozen=True)
class Sizes:
    """What one run measures: the full GPU run, or ``--smoke`` (tiny, CPU, seconds)."""

    train_input: int = 224
    train_frames: int | None = None  # None: the preset's 8
    train_batch: int | None = None  # None: the preset's 16
    train_overrides: tuple[str, ...] = ()
    max_batch: int = 1024
    compile_backend: str = "inductor"
    compile_seconds: float = 60.0  # the time kept for the compiled measurement (the train part's last)
    step_seconds: float = 2.5
    min_steps: int = 3
    encoder_models: tuple[str, ...] = tuple(ENCODERS)
    encoder_frame: tuple[int, int] = (480, 854)
    encoder_short_side: int = 480
    encoder_batch: int = 4
    encoder_seconds: float = 1.0
    eval_short_side: int = 480
    eval_fallback: tuple[int, int, int, int] = (4, 3, 24, 480)  # videos, val videos, frames, height (x 854)
    ddp_steps: int = 10
    learn_input: tuple[int, int] = (384, 512)
    learn_stride: int = 8
    learn_videos: int = 108
    learn_val_videos: int = 8
    learn_minutes: float = 3.0
    learn_probe_steps: tuple[int, int] = (10, 60)
    learn_max_steps: int = 100_000
    learn_evals: int = 5
    learn_eval_reserve: float = 40.0  # seconds kept for references and evaluations
    learn_overrides: tuple[str, ...] = ()
    caps: tuple[tuple[str, float], ...] = (("env", 20), ("train", 140), ("encoders", 40), ("eval", 45), ("ddp", 40),
                                           ("learning", 260))
    budget: float = 480.0


FULL = Sizes()
SMOKE = Sizes(
    train_input=32, train_frames=3, train_batch=2, max_batch=4, compile_backend="eager", compile_seconds=0.0,
    train_overrides=("model.slot_dim=32", "model.hidden_dim=64", "model.decoder_hidden_dim=64"),
    step_seconds=0.0, min_steps=2, encoder_models=("ViT-S/8",), encoder_frame=(48, 80), encoder_short_side=32,
    encoder_batch=1, encoder_seconds=0.0, eval_short_side=32, eval_fallback=(2, 1, 4, 48), ddp_steps=2,
    learn_input=(64, 80), learn_videos=3, learn_val_videos=1, learn_minutes=0.05, learn_probe_steps=(1, 2),
    learn_max_steps=4, learn_evals=2, learn_eval_reserve=0.0,
    learn_overrides=("data.synthetic.num_frames=6", "data.batch_size=2", "data.clips_per_video=2"),
    caps=tuple((p, 180.0) for p in PARTS), budget=900.0,
)


# --------------------------------------------------------------------------------------------- plumbing


class Report:
    """One part's results, written to its JSON file after every change, so a part killed at its time cap
    keeps what it had measured."""

    def __init__(self, path: Path, part: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {"part": part, "status": "running", "rows": [], "notes": []}
        self.flush()

    def row(self, **values: Any) -> None:
        self.data["rows"].append(values)
        self.flush()
        print(json.dumps(values, default=str), flush=True)

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        self.flush()
        print(text, flush=True)

    def set(self, **values: Any) -> None:
        self.data.update(values)
        self.flush()

    def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, self.path)


@dataclass
class Context:
    """What a part runs with: the device, the sizes, its folder and its time budget."""

    device: Any  # torch.device
    sizes: Sizes
    out: Path
    seconds: float
    davis_root: Path | None
    peak: str | None = None  # --peak BF16,TF32,FP32
    started: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        """Seconds left of this part's budget."""
        return self.seconds - (time.perf_counter() - self.started)

    @property
    def cuda(self) -> bool:
        return bool(self.device.type == "cuda")


def compose(overrides: list[str]) -> Any:
    """The CLI's config for ``overrides`` (``python -m dinosavi <overrides>`` composes the same)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from dinosavi.cli.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "dinosavi" / "conf"), version_base="1.3"):
        return hydra_compose("main", overrides=overrides)


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: Any) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def is_oom(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300] if str(error).strip() else ''}"


def peak_for(precision: str, env: dict[str, Any]) -> float | None:
    """The peak FLOPS (not TFLOPS) a step of ``precision`` is measured against, or None (unknown device)."""
    peak = env.get("peak")
    if not peak:
        return None
    if precision == "bf16":
        return float(peak["bf16"]) * 1e12
    return float(peak["tf32" if env.get("tf32_matmul") else "fp32"]) * 1e12


def rate(fn: Callable[[], Any], items: int, device: Any, seconds: float, min_calls: int = 2) -> float:
    """Items per second of ``fn`` (one warm-up call, then ``min_calls`` or ``seconds``, synchronised)."""
    fn()
    sync(device)
    start, calls = time.perf_counter(), 0
    while calls < min_calls or time.perf_counter() - start < seconds:
        fn()
        sync(device)
        calls += 1
    return items * calls / (time.perf_counter() - start)


# --------------------------------------------------------------------------------------------- 1. environment


def part_env(ctx: Context, report: Report) -> None:
    import timm
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "device": str(ctx.device),
        "name": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "nccl": torch.distributed.is_available() and torch.distributed.is_nccl_available(),
        "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
    }
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        env |= {"name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count,
                "sdpa_enabled": {"flash": torch.backends.cuda.flash_sdp_enabled(),
                                 "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                                 "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
                                 "math": torch.backends.cuda.math_sdp_enabled()}}
        with contextlib.suppress(Exception):
            env["nccl_version"] = ".".join(map(str, torch.cuda.nccl.version()))
    env["sdpa_runs"] = _sdpa_backends(ctx)
    found = find_peak(env["name"]) if ctx.cuda else None
    if ctx.peak:
        bf16, tf32, fp32 = (float(v) for v in ctx.peak.split(","))
        found = ("--peak", Peak(bf16, tf32, fp32))
    env["peak_entry"], env["peak"] = (found[0], found[1].__dict__) if found else (None, None)
    if ctx.cuda and not found:
        report.note(f"no peak FLOPS for `{env['name']}` in PEAKS: MFU is not computed (pass --peak BF16,TF32,FP32)")
    report.set(env=env)


def _sdpa_backends(ctx: Context) -> dict[str, str]:
    """Which SDPA backends run a bf16 attention of ViT-S/8's shape at 480p (6361 tokens, 6 heads of 64)."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    tokens = 6361 if ctx.cuda else 65
    dtype = torch.bfloat16 if ctx.cuda else torch.float32
    q = torch.randn(1, 6, tokens, 64, device=ctx.device, dtype=dtype)
    runs = {}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                    SDPBackend.MATH):
        try:
            with sdpa_kernel([backend]):
                F.scaled_dot_product_attention(q, q, q)
            sync(ctx.device)
            runs[backend.name.lower()] = "runs"
        except RuntimeError as error:
            runs[backend.name.lower()] = f"no ({error_text(error)[:80]})"
    return runs


# --------------------------------------------------------------------------------------------- 2. training step


def _random_clips(count: int, items: list[Any], frames: int) -> Any:
    """``count`` training clips cycling over ``items``: what a clip dataset yields (raw ``(T, 3, H, W)`` uint8,
    or a dict of frames, features and CLS attention as ``features.in_memory`` hands the step once a frame is
    encoded), without files."""
    from dinosavi.data.videos import ClipDataset

    class RandomClips(ClipDataset):
        def _clip(self, video: int, start: int) -> Any:
            return items[video % len(items)]

    return RandomClips([frames] * count, frames, 1, 1, seed=0)


class TrainBench:
    """Builds trainers of the headline preset as ``mode=train`` does and times their step."""

    PREFETCH = 2  # distinct batches, cycled

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.encoders: dict[str, Any] = {}
        self.run_dir = Path(tempfile.mkdtemp(prefix="train-", dir=ctx.out))

    def config(self, precision: str, compile_backend: str | None, batch: int | None, world: int = 1) -> Any:
        s = self.ctx.sizes
        overrides = ["mode=train", f"hparam={PRESET}", f"encoder={TRAIN_ENCODER}", f"device={self.ctx.device.type}",
                     f"encoder.precision={'bf16' if precision == 'bf16' else 'fp32'}", f"train.precision={precision}",
                     f"train.input_size=[{s.train_input},{s.train_input}]", "train.max_steps=1000000",
                     f"train.compile={compile_backend or 'null'}"]
        if s.train_frames:
            overrides.append(f"data.frames_per_clip={s.train_frames}")
        overrides += s.train_overrides
        if batch:
            overrides.append(f"data.batch_size={batch * world}")
        return compose(overrides)

    def preset_batch(self) -> int:
        return int(self.config("fp32", None, self.ctx.sizes.train_batch).data.batch_size)

    def trainer(self, source_kind: str, precision: str, compile_backend: str | None, batch: int,
                ddp: Any = None) -> tuple[Any, list[Any]]:
        """A :class:`dinosavi.training.loop.Trainer` and prefetched batches of its own DataLoader."""
        import torch

        from dinosavi.cli.build import build_encoder, build_feature_source, check_model_encoder, input_size
        from dinosavi.cli.modes import options
        from dinosavi.data.badfiles import SkipLog
        from dinosavi.models.factory import build_model
        from dinosavi.training.distributed import Distributed
        from dinosavi.training.loop import Trainer
        from dinosavi.training.options import TrainOptions
        from dinosavi.utils import seed_everything

        ddp = ddp or Distributed(device=self.ctx.device)
        cfg = self.config(precision, compile_backend, batch, ddp.world_size)
        seed_everything(cfg.seed)
        key = cfg.encoder.precision
        if key not in self.encoders:
            self.encoders[key] = build_encoder(cfg.encoder).to(self.ctx.device)
        encoder = self.encoders[key]
        check_model_encoder(cfg.model, encoder, cfg.preset)
        model = build_model(cfg.model, encoder.feature_dim).to(self.ctx.device).train()
        source = build_feature_source(cfg, encoder, "train")
        T, (H, W) = int(cfg.data.frames_per_clip), input_size(cfg)
        h, w = encoder.grid_size(H, W)
        g = torch.Generator().manual_seed(0)
        frames = [torch.randint(0, 256, (T, 3, H, W), dtype=torch.uint8, generator=g) for _ in range(2)]
        items: list[Any] = frames
        if source_kind == "cached":
            items = [{"frames": f, "features": torch.randn(T, encoder.feature_dim, h, w, generator=g),
                      "cls_attention": torch.rand(T, encoder.num_heads or 1, h, w, generator=g)} for f in frames]
        global_batch = batch * ddp.world_size
        clips = _random_clips(global_batch * self.PREFETCH, items, T)
        trainer = Trainer(model, clips, source, options(cfg.train, TrainOptions), self.run_dir, global_batch, ddp,
                          {}, SkipLog("random clips", len(clips), 1.0, None))
        batches = [b for b, _ in itertools.islice(trainer.loader(0, cfg.seed), self.PREFETCH)]
        return trainer, batches

    def steps(self, trainer: Any, batches: list[Any], count: int) -> float:
        """Seconds of ``count`` steps, synchronised."""
        sync(self.ctx.device)
        start = time.perf_counter()
        for i in range(count):
            trainer.step(batches[i % len(batches)], [])
        sync(self.ctx.device)
        return time.perf_counter() - start

    def time(self, trainer: Any, batches: list[Any], warmup: int) -> dict[str, Any]:
        """Steps/s after ``warmup`` steps (the first one's seconds: compilation), and the peak memory."""
        import torch

        s, device = self.ctx.sizes, self.ctx.device
        first = self.steps(trainer, batches, 1)
        self.steps(trainer, batches, warmup - 1)
        if self.ctx.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        seconds = max(0.0, min(s.step_seconds, self.ctx.left() - 10))
        start, count = time.perf_counter(), 0
        while count < s.min_steps or time.perf_counter() - start < seconds:
            trainer.step(batches[count % len(batches)], [])
            count += 1
        sync(device)
        elapsed = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if self.ctx.cuda else None
        return {"steps_per_s": count / elapsed, "ms_per_step": 1000 * elapsed / count, "timed_steps": count,
                "first_step_s": round(first, 2), "peak_gib": None if peak is None else round(peak, 2)}

    def flops(self, trainer: Any, batches: list[Any]) -> tuple[float, float]:
        """FLOPs of one step, and of the encoder's part of it (online encoding)."""
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            trainer.step(batches[0], [])
        with FlopCounterMode(display=False) as encoder_counter:
            trainer.source.batch(batches[0], self.ctx.device)
        return float(counter.get_total_flops()), float(encoder_counter.get_total_flops())

    def fits(self, source_kind: str, precision: str, batch: int) -> bool:
        """Whether two steps at ``batch`` run without running out of memory."""
        try:
            trainer, batches = self.trainer(source_kind, precision, None, batch)
            self.steps(trainer, batches, 2)
            return True
        except Exception as error:
            if not is_oom(error):
                raise
            return False
        finally:
            trainer = batches = None
            free_memory(self.ctx.device)

    def largest_batch(self, source_kind: str, precision: str, start: int,
                      start_fits: bool | None) -> tuple[int | None, list[int], str]:
        """The largest batch that fits, doubling from ``start`` (halving when it does not fit; ``start_fits``:
        already known), the batches tried, and what stopped the search: ``out of memory``, ``max_batch`` or
        ``time`` (the part's cap near)."""
        tried, cap = [start], self.ctx.sizes.max_batch
        if start_fits if start_fits is not None else self.fits(source_kind, precision, start):
            best, batch = start, start * 2
            while batch <= cap:
                if self.ctx.left() < 20:
                    return best, tried, "time"
                tried.append(batch)
                if not self.fits(source_kind, precision, batch):
                    return best, tried, "out of memory"
                best, batch = batch, batch * 2
            return best, tried, "max_batch"
        batch = start // 2
        while batch >= 1:
            tried.append(batch)
            if self.fits(source_kind, precision, batch):
                return batch, tried, "out of memory"
            batch //= 2
        return None, tried, "out of memory"


def part_train(ctx: Context, report: Report) -> None:
    import torch

    env = _read_env(ctx)
    bench = TrainBench(ctx)
    preset = bench.preset_batch()
    backend = ctx.sizes.compile_backend
    report.set(preset=PRESET, encoder=TRAIN_ENCODER, preset_batch=preset, compile_backend=backend)
    flops_per_clip: dict[str, tuple[float, float]] = {}
    # most wanted first; the compiled step last, its time kept for it: a compilation that passes the part's cap
    # costs only itself. What the time does not allow is skipped, and said so.
    plan = [("cached", "fp32", None, "preset"), ("cached", "bf16", None, "preset"), ("online", "fp32", None, "preset"),
            ("online", "bf16", None, "preset"), ("cached", "bf16", None, "largest"),
            ("online", "bf16", None, "largest"), ("cached", "fp32", None, "largest"),
            ("online", "fp32", None, "largest"), ("cached", "bf16", backend, "preset")]
    for source_kind, precision, compile_backend, which in plan:
        row: dict[str, Any] = {"source": source_kind, "precision": precision, "compile": compile_backend,
                               "batch": preset if which == "preset" else None, "which": which}
        needed = ctx.sizes.compile_seconds + (0 if compile_backend else 15)
        if ctx.left() < needed:
            report.row(**row, status="skipped", reason=f"less than {needed:.0f} s left of the part's time cap")
            continue
        report.set(running=f"{source_kind} {precision} {compile_backend or ''} {which} batch".replace("  ", " "))
        started = time.perf_counter()
        try:
            if which == "largest":
                done = [r["status"] for r in report.data["rows"] if r["which"] == "preset" and not r["compile"]
                        and (r["source"], r["precision"]) == (source_kind, precision)]
                start_fits = {"ok": True, "out of memory": False}.get(done[0]) if done else None
                batch, tried, stopped_by = bench.largest_batch(source_kind, precision, preset, start_fits)
                row |= {"batch": batch, "tried": tried, "stopped_by": stopped_by}
                if batch is None:
                    report.row(**row, status="failed", reason="no batch fits")
                    continue
            if compile_backend:
                torch._dynamo.reset()
            trainer, batches = bench.trainer(source_kind, precision, compile_backend, row["batch"])
            row |= bench.time(trainer, batches, warmup=3 if compile_backend else 2)
            if source_kind not in flops_per_clip and compile_backend is None:  # counted on an eager step
                try:
                    total, encoder = bench.flops(trainer, batches)
                    flops_per_clip[source_kind] = (total / row["batch"], encoder / row["batch"])
                except Exception as error:
                    row["flop_count_error"] = error_text(error)
            row["clips_per_s"] = row["steps_per_s"] * row["batch"]
            if source_kind in flops_per_clip:
                per_clip, encoder_per_clip = flops_per_clip[source_kind]
                row["gflop_per_step"] = per_clip * row["batch"] / 1e9
                row["encoder_gflop_per_step"] = encoder_per_clip * row["batch"] / 1e9
                row["tflops"] = per_clip * row["clips_per_s"] / 1e12
                peak = peak_for(precision, env)
                row["mfu"] = None if peak is None else per_clip * row["clips_per_s"] / peak
            report.row(**row, seconds=round(time.perf_counter() - started, 1), status="ok")
        except Exception as error:
            report.row(**row, status="out of memory" if is_oom(error) else "failed", error=error_text(error),
                       trace=traceback.format_exc()[-2000:])
        finally:
            trainer = batches = None
            if compile_backend:
                torch._dynamo.reset()
            free_memory(ctx.device)
    report.set(flops_per_clip={k: v[0] for k, v in flops_per_clip.items()})


def _read_env(ctx: Context) -> dict[str, Any]:
    path = ctx.out / "env.json"
    return json.loads(path.read_text()).get("env", {}) if path.exists() else {}


# --------------------------------------------------------------------------------------------- 3. encoders


def part_encoders(ctx: Context, report: Report) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dinosavi.cli.build import build_encoder
    from dinosavi.cli.config import EncoderConfig
    from dinosavi.encoders.base import ResizeRule

    s, device, env = ctx.sizes, ctx.device, _read_env(ctx)
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (s.encoder_batch, 3, *s.encoder_frame), dtype=torch.uint8, generator=g)
    for label, precision in itertools.product(s.encoder_models, ("bf16", "fp32")):
        timm_name = ENCODERS[label]
        row: dict[str, Any] = {"model": label, "precision": precision, "batch": s.encoder_batch}
        if ctx.left() < 8:
            report.row(**row, status="skipped", reason="the part's time cap was reached")
            continue
        report.set(running=f"{label} {precision}")
        try:
            encoder = build_encoder(EncoderConfig(name=f"random:{timm_name}", precision=precision)).to(device)
            rule = ResizeRule(short_side=s.encoder_short_side, multiple_of=encoder.patch_size)
            x = encoder.preprocess(frames.to(device), rule)
            row["input"] = "x".join(map(str, x.shape[-2:]))
            half = ctx.cuda and precision == "bf16"  # the wrappers' autocast is CUDA-only; so is timm's here

            @torch.inference_mode()
            def ours(encoder: Any = encoder, x: Any = x) -> Any:
                return encoder(x)

            @torch.inference_mode()
            def bare(encoder: Any = encoder, x: Any = x, half: bool = half) -> Any:
                with torch.autocast("cuda", dtype=torch.bfloat16) if half else contextlib.nullcontext():
                    return encoder.model.forward_features(x)

            def encode(encoder: Any = encoder, rule: Any = rule) -> Any:
                return encoder.encode(frames, rule, s.encoder_batch)

            seconds = min(s.encoder_seconds, max(0.0, ctx.left() / 12))
            if ctx.cuda:
                torch.cuda.reset_peak_memory_stats(device)
            row["ours_fps"] = rate(ours, s.encoder_batch, device, seconds)
            row["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if ctx.cuda else None
            row["timm_fps"] = rate(bare, s.encoder_batch, device, seconds)
            row["ratio"] = row["ours_fps"] / row["timm_fps"]
            row["encode_fps"] = rate(encode, s.encoder_batch, device, seconds)
            with FlopCounterMode(display=False) as counter:
                ours()
            by_op = counter.get_flop_counts().get("Global", {})
            total = float(counter.get_total_flops())
            # a ViT's only batched matmuls are attention's (SDPA on CUDA; decomposed into bmm on CPU)
            attention = sum(float(v) for op, v in by_op.items() if "scaled_dot_product" in str(op) or "bmm" in str(op))
            row["gflop_per_frame"] = total / s.encoder_batch / 1e9
            row["attention_flop_share"] = attention / total if total else None
            try:  # the profiler needs CUPTI on CUDA: without it, the row keeps its other numbers
                row["attention_time_share"] = _attention_time_share(ours, device)
            except Exception as error:
                row["attention_time_share"], row["profiler_error"] = None, error_text(error)
            peak = peak_for(precision, env)
            row["mfu"] = None if peak is None else total / s.encoder_batch * row["ours_fps"] / peak
            report.row(**row, status="ok")
        except Exception as error:
            report.row(**row, status="out of memory" if is_oom(error) else "failed", error=error_text(error),
                       trace=traceback.format_exc()[-2000:])
        finally:
            encoder = x = None
            free_memory(device)


def _attention_time_share(fn: Callable[[], Any], device: Any) -> float | None:
    """Share of one call's kernel time (CPU: operator time) spent in ``aten::scaled_dot_product_attention``."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        fn()
        sync(device)
    events = prof.key_averages()
    prefix = "device" if cuda else "cpu"
    total = sum(getattr(e, f"self_{prefix}_time_total", 0.0) for e in events)
    attention = sum(getattr(e, f"{prefix}_time_total", 0.0) for e in events
                    if e.key == "aten::scaled_dot_product_attention")
    return attention / total if total else None


# --------------------------------------------------------------------------------------------- 4. evaluation


def _eval_data(ctx: Context, report: Report) -> Path:
    """The DAVIS sample, or a synthetic DAVIS-layout set generated in the run folder when it is absent."""
    from dinosavi.data.synthetic import SyntheticSpec, generate_synthetic

    if ctx.davis_root is not None and (ctx.davis_root / "ImageSets").is_dir():
        report.set(data=f"DAVIS sample at {ctx.davis_root}")
        return ctx.davis_root
    videos, val, frames, height = ctx.sizes.eval_fallback
    width = round(height * 854 / 480)
    spec = SyntheticSpec(num_videos=videos, val_videos=val, num_frames=frames, height=height, width=width, seed=0)
    root = generate_synthetic(ctx.out / "eval-synthetic", spec, num_threads=os.cpu_count() or 2)
    reason = "not given" if ctx.davis_root is None else f"not found at {ctx.davis_root}"
    report.note(f"the DAVIS sample was {reason}: evaluation runs on a synthetic set generated here ({val} val "
                f"videos of {frames} frames at {height}x{width}), not on DAVIS")
    report.set(data=f"synthetic, {val} videos x {frames} frames at {height}x{width} (no DAVIS sample)")
    return root


def part_eval(ctx: Context, report: Report) -> None:
    from dinosavi.cli.build import build_encoder, build_sequences
    from dinosavi.cli.modes import evaluate_model, run_propagate, run_score
    from dinosavi.models.factory import build_model
    from dinosavi.utils import seed_everything

    root = _eval_data(ctx, report)
    base = [f"encoder={TRAIN_ENCODER}", "data=davis", f"data.root={root}", "data.split=val",
            f"device={ctx.device.type}", "eval.overlays=false", "eval.videos=false", "eval.report=false"]
    dataset = build_sequences(compose(["mode=eval", *base]).data, "val")
    frames = sum(len(dataset.frame_paths(name)) for name in dataset.sequence_names)
    report.set(sequences=len(dataset), frames=frames)
    short = ctx.sizes.eval_short_side

    def timed(name: str, run: Callable[[], dict[str, float]], what: str) -> None:
        if ctx.left() < 10:
            report.row(measure=name, status="skipped", reason="the part's time cap was reached")
            return
        report.set(running=name)
        try:
            start = time.perf_counter()
            scores = run()
            seconds = time.perf_counter() - start
            report.row(measure=name, what=what, frames=frames, seconds=seconds, fps=frames / seconds,
                       jf=scores.get("J&F-Mean"), status="ok")
        except Exception as error:
            report.row(measure=name, status="failed", error=error_text(error), trace=traceback.format_exc()[-2000:])
        finally:
            free_memory(ctx.device)

    def lock_on(precision: str) -> dict[str, float]:
        cfg = compose(["mode=eval", f"hparam={PRESET}", *base, f"eval.short_side={short}",
                       f"encoder.precision={precision}"])
        seed_everything(cfg.seed)
        encoder = build_encoder(cfg.encoder).to(ctx.device)
        model = build_model(cfg.model, encoder.feature_dim).to(ctx.device).eval()  # untrained: speed only
        return evaluate_model(cfg, model, encoder, ctx.out / f"lock-on-{precision}", f"{PRESET} (untrained)")

    what = f"mode=eval {PRESET} (untrained), eval.short_side={short}, end to end incl. PNGs and scores"
    timed("lock-on, encoder fp32", lambda: lock_on("fp32"), what)
    timed("label propagation", lambda: run_propagate(
        compose(["mode=propagate", *base, f"propagate.short_side={short}"]), ctx.out / "propagate", []),
        f"mode=propagate propagate=dino, short side {short}, encoder fp32")
    timed("mode=score", lambda: run_score(
        compose(["mode=score", f"results={ctx.out / 'lock-on-fp32' / 'results'}", "data=davis", f"data.root={root}",
                 "data.split=val"]), ctx.out / "score", []), "the lock-on PNGs against the annotations")
    timed("lock-on, encoder bf16", lambda: lock_on("bf16"), f"{what}; encoder.precision=bf16")


# --------------------------------------------------------------------------------------------- 5. DDP


def ddp_worker(ctx: Context, report_path: Path) -> None:
    """One process of the torchrun launch: the training step of part 2 (cached features, bf16, the preset's
    batch per process) under DistributedDataParallel; rank 0 writes the report."""
    from dinosavi.training.distributed import Distributed

    ddp = Distributed.from_env()
    device = ddp.start(ctx.device)
    ctx = replace(ctx, device=device)
    report = Report(report_path, "ddp") if ddp.rank == 0 else None
    bench = TrainBench(ctx)
    batch = bench.preset_batch()
    try:
        trainer, batches = bench.trainer("cached", "bf16", None, batch, ddp)
        bench.steps(trainer, batches, 2)
        seconds = bench.steps(trainer, batches, ctx.sizes.ddp_steps)
        if report is not None:
            import torch.distributed as dist

            steps_per_s = ctx.sizes.ddp_steps / seconds
            report.row(processes=ddp.world_size, backend=dist.get_backend(), batch_per_process=batch,
                       precision="bf16", source="cached", steps_per_s=steps_per_s,
                       clips_per_s_per_process=steps_per_s * batch, status="ok")
    finally:
        ddp.close()


def run_ddp(args: argparse.Namespace, env: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Launch the DDP workers with torchrun (NCCL on CUDA, 2 gloo processes on CPU), or say why not."""
    cuda, gpus = args.device.startswith("cuda"), int(env.get("gpus") or 0)
    if cuda and gpus < 2:
        return {"part": "ddp", "status": "skipped", "reason": f"{gpus} GPU: DDP needs 2 or more (not measured)"}
    if cuda and not env.get("nccl"):
        return {"part": "ddp", "status": "skipped", "reason": "this torch has no NCCL (not measured)"}
    processes = gpus if cuda else 2
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           __file__, *_child_args(args, "ddp"), "--ddp-worker"]
    code, tail = _run_child(cmd, args.out / "ddp.log", timeout)
    path = args.out / "ddp.json"
    data = json.loads(path.read_text()) if path.exists() else {"part": "ddp", "rows": []}
    if code is None:
        return data | {"status": "timeout", "reason": f"killed at its {timeout:.0f} s cap", "log_tail": tail}
    if code != 0 or not data["rows"]:
        return data | {"status": "failed", "log_tail": tail}
    return data | {"status": "ok"}


# --------------------------------------------------------------------------------------------- 6. learning


def part_learning(ctx: Context, report: Report) -> None:
    from omegaconf import OmegaConf

    import benchmarks.bench_learning as learning
    from dinosavi.cli.modes import run_train
    from dinosavi.data.synthetic import generate_synthetic

    s = ctx.sizes
    height, width = s.learn_input
    out = ctx.out / "learning"
    args = SimpleNamespace(
        preset="demo", encoder="efficientnet_lite0", stride=s.learn_stride, steps=0, minutes=None, eval_every=1,
        videos=s.learn_videos, val_videos=s.learn_val_videos, data_root=str(out / f"synthetic-{height}x{width}"),
        out=str(out), device=ctx.device.type, seed=0, record=False, from_json=None,
        override=[f"train.input_size=[{height},{width}]", f"eval.short_side={height}",
                  f"data.synthetic.height={height}", f"data.synthetic.width={width}", *s.learn_overrides],
    )
    # the same run's config as bench_learning.run composes it: generate the set on every core, fill the store
    base = [f"hparam={args.preset}", f"encoder={args.encoder}", f"encoder.stride={args.stride}", "data=synthetic",
            f"data.root={args.data_root}", f"data.synthetic.num_videos={args.videos}",
            f"data.synthetic.val_videos={args.val_videos}", f"features.store={out / 'features'}",
            f"device={args.device}", f"seed={args.seed}", *args.override]
    cfg = learning.compose_config(["mode=train", *base])
    if not Path(args.data_root).exists():
        generate_synthetic(args.data_root, OmegaConf.to_object(cfg.data.synthetic), num_threads=os.cpu_count() or 2)
    # seconds per step without start-up: one step fills the feature store, then two short runs of the recipe
    times = []
    for steps in (1, *s.learn_probe_steps):
        probe = learning.compose_config(["mode=train", *base, f"train.max_steps={steps}", "train.save_every=100000",
                                         "train.log_every=100000"])
        start = time.perf_counter()
        run_train(probe, out / f"probe-{len(times)}-{steps}", [])
        times.append((steps, time.perf_counter() - start))
    (n1, t1), (n2, t2) = times[1:]
    per_step = (t2 - t1) / (n2 - n1)
    if per_step < 0.02 * t2 / n2:  # start-up noise swamped the difference: an upper bound instead
        per_step = t2 / n2
    budget = min(s.learn_minutes * 60, ctx.left() - s.learn_eval_reserve)
    if budget < min(10.0, s.learn_minutes * 60):
        report.set(status="skipped", reason=f"{max(budget, 0):.0f} s left to train after the set-up: no curve")
        return
    eval_every = max(1, min(int(budget / per_step), s.learn_max_steps) // s.learn_evals)
    args.steps, args.eval_every = eval_every * s.learn_evals, eval_every
    report.set(seconds_per_step=per_step, training_budget_s=budget, steps=args.steps, eval_every=eval_every,
               setup=f"hparam=demo encoder=efficientnet_lite0 encoder.stride={args.stride}, input {height}x{width}, "
                     f"{args.videos - args.val_videos} train / {args.val_videos} val synthetic videos")
    curve = learning.run(args)
    report.set(rows=curve.rows, references=curve.references, steps_per_second=curve.steps_per_second,
               wall_minutes=curve.wall_minutes, table=learning.table(curve), cpu_curve=_cpu_curve())


def _cpu_curve() -> str | None:
    """The ``demo`` preset's CPU learning curve recorded in ``benchmarks/RESULTS.md`` (its table), if any."""
    results = ROOT / "benchmarks" / "RESULTS.md"
    text = results.read_text() if results.exists() else ""
    found = re.search(r"<!-- bench_learning:demo:begin -->\n(.*?)<!-- bench_learning:demo:end -->", text, re.S)
    if not found:
        return None
    return "\n".join(line for line in found.group(1).splitlines() if not line.startswith("!["))


# --------------------------------------------------------------------------------------------- the run


RUNNERS: dict[str, Callable[[Context, Report], None]] = {
    "env": part_env, "train": part_train, "encoders": part_encoders, "eval": part_eval, "learning": part_learning,
}


def _child_args(args: argparse.Namespace, part: str) -> list[str]:
    out = ["--out", str(args.out), "--device", args.device, "--part", part]
    if args.smoke:
        out.append("--smoke")
    if args.davis_root:
        out += ["--davis-root", str(args.davis_root)]
    if args.peak:
        out += ["--peak", args.peak]
    return [*out, "--part-seconds", str(args.part_seconds)]


def _run_child(cmd: list[str], log: Path, timeout: float) -> tuple[int | None, str]:
    """Run ``cmd`` in its own process group, output to ``log``; kill the group after ``timeout`` seconds.
    Returns the exit code (None on timeout) and the log's tail."""
    with log.open("w") as stream:
        proc = subprocess.Popen(cmd, stdout=stream, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    return code, log.read_text()[-3000:]


def run_part_in_process(args: argparse.Namespace) -> None:
    """``--part NAME``: run one part here (a child of :func:`main`), its report in ``<out>/<part>.json``."""
    import torch

    out = Path(args.out)
    sizes = SMOKE if args.smoke else FULL
    ctx = Context(torch.device(args.device), sizes, out, args.part_seconds,
                  Path(args.davis_root) if args.davis_root else (None if args.smoke else DAVIS_SAMPLE), args.peak)
    if args.part == "ddp" and args.ddp_worker:
        ddp_worker(ctx, out / "ddp.json")
        return
    report = Report(out / f"{args.part}.json", args.part)
    try:
        RUNNERS[args.part](ctx, report)
        if report.data["status"] == "running":
            report.set(status="ok")
    except Exception as error:
        report.set(status="failed", error=error_text(error), trace=traceback.format_exc()[-3000:])
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks that every part runs")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--out", default=None, help="run folder (default outputs/bench_gpu/<time>)")
    parser.add_argument("--davis-root", default=None,
                        help=f"the DAVIS sample (default $DINOSAVI_DAVIS_SAMPLE or {DAVIS_SAMPLE}; --smoke: "
                             "none); absent: a synthetic set, said so")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default 480)")
    parser.add_argument("--peak", default=None, help="BF16,TF32,FP32 dense TFLOPS of a device missing from PEAKS")
    parser.add_argument("--record", action="store_true", help="append the Markdown to benchmarks/RESULTS.md")
    parser.add_argument("--from-json", default=None,
                        help="measure nothing: write the Markdown of an earlier run's bench_gpu.json (with --record)")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--part-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        run_part_in_process(args)
        return
    if args.record and args.smoke:
        parser.error("--record writes GPU results; a --smoke run measures nothing worth recording")
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        if args.record and (results["smoke"] or not results.get("device", "").startswith("cuda")):
            parser.error(f"--record writes GPU results; {args.from_json} is a smoke or CPU run")
        finish(results, Path(args.from_json).parent, args.record)
        return
    if args.device is None:
        if not args.smoke and not _cuda_available():
            print("bench_gpu: no CUDA device, nothing to measure (--smoke checks the script on the CPU; "
                  "--device cpu runs the full sizes there)")
            return
        args.device = "cuda" if _cuda_available() else "cpu"
    if args.record and not args.device.startswith("cuda"):
        parser.error("--record writes GPU results; this run is on the CPU")
    sizes = SMOKE if args.smoke else FULL
    args.out = Path(args.out or ROOT / "outputs" / "bench_gpu" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    budget = args.budget or sizes.budget
    deadline = time.perf_counter() + budget
    caps = dict(sizes.caps)
    results: dict[str, Any] = {"smoke": args.smoke, "device": args.device, "date": time.strftime("%Y-%m-%d"),
                               "budget_s": budget, "command": " ".join(sys.argv), "parts": {}}
    parts = ["env", *(p for p in args.parts if p != "env")]  # the others read the environment
    for part in PARTS:
        if part not in parts:
            continue
        timeout = min(caps[part], deadline - time.perf_counter())
        start = time.perf_counter()
        if timeout < 5:
            data = {"part": part, "status": "skipped", "reason": f"the {budget:.0f} s budget was spent"}
        else:
            args.part_seconds = timeout - 5
            if part == "ddp":
                data = run_ddp(args, results["parts"]["env"].get("env", {}), timeout)
            else:
                code, tail = _run_child([sys.executable, __file__, *_child_args(args, part)],
                                        args.out / f"{part}.log", timeout)
                path = args.out / f"{part}.json"
                data = json.loads(path.read_text()) if path.exists() else {"part": part, "rows": []}
                if code is None:
                    data |= {"status": "timeout", "reason": f"killed at its {timeout:.0f} s cap", "log_tail": tail}
                elif code != 0:
                    data |= {"status": "failed", "log_tail": tail}
        data["seconds"] = round(time.perf_counter() - start, 1)
        results["parts"][part] = data
        print(f"{part}: {data.get('status')} in {data['seconds']} s", flush=True)
    results["total_s"] = round(budget - (deadline - time.perf_counter()), 1)
    (args.out / "bench_gpu.json").write_text(json.dumps(results, indent=2, default=str))
    finish(results, args.out, args.record)


def finish(results: dict[str, Any], out: Path, record: bool) -> None:
    """Write ``<out>/bench_gpu.md``, print it, and with ``record`` append it to ``benchmarks/RESULTS.md``."""
    markdown = to_markdown(results)
    (out / "bench_gpu.md").write_text(markdown)
    print(markdown)
    print(f"wrote {out / 'bench_gpu.json'} and {out / 'bench_gpu.md'}")
    if record:
        path = ROOT / "benchmarks" / "RESULTS.md"
        path.write_text(path.read_text().rstrip() + "\n\n" + to_markdown(results, in_results=True))
        print(f"appended to {path}")


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


# --------------------------------------------------------------------------------------------- Markdown


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _table(header: list[str], rows: Iterator[list[str]] | list[list[str]]) -> list[str]:
    def cells(row: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in row) + " |"

    return [cells(header), "|" + "---|" * len(header)] + [cells(row) for row in rows]


def _problem(row: dict[str, Any]) -> str:
    return f"{row.get('status')}: {row.get('reason') or row.get('error') or ''}".strip()


def to_markdown(results: dict[str, Any], in_results: bool = False) -> str:
    """The run as Markdown: one section, its device named, one table per part (``in_results``: for
    ``benchmarks/RESULTS.md``, which holds the CPU learning curve already)."""
    parts = results["parts"]
    env = parts.get("env", {}).get("env", {})
    name = env.get("name", "unknown device")
    title = "smoke run (tiny sizes; not a measurement)" if results["smoke"] else "measured"
    lines = [f"## GPU — `benchmarks/bench_gpu.py` on {name} ({results.get('date')}, {title})", ""]
    if env:
        sdpa = ", ".join(f"{k} {v}" for k, v in env.get("sdpa_runs", {}).items())
        peak = env.get("peak")
        lines += [f"torch {env.get('torch')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}, "
                  f"{env.get('gpus')} GPU(s), TF32 matmul {env.get('tf32_matmul')} / cuDNN {env.get('tf32_cudnn')}; "
                  f"SDPA (bf16, ViT-S/8 at 480p): {sdpa}. Peak: "
                  + (f"{env.get('peak_entry')}, bf16 {peak['bf16']} / TF32 {peak['tf32']} / FP32 {peak['fp32']} "
                     "TFLOPS dense." if peak else "none (MFU not computed)."), ""]
    lines += _train_md(parts.get("train")) + _encoders_md(parts.get("encoders")) + _eval_md(parts.get("eval"))
    lines += _ddp_md(parts.get("ddp"), parts.get("train")) + _learning_md(parts.get("learning"), in_results)
    for part, data in parts.items():
        if data.get("status") in ("failed", "timeout") and data.get("rows"):
            detail = data.get("reason") or data.get("error") or (data.get("log_tail") or "").strip()[-200:]
            lines += [f"*{part}: {data['status']} while measuring {data.get('running', '?')} — {detail}*", ""]
    lines += ["Parts: " + ", ".join(f"{p} {d.get('status')} ({d.get('seconds')} s)" for p, d in parts.items())
              + f"; total {results.get('total_s')} s of the {results['budget_s']:.0f} s budget.", ""]
    return "\n".join(lines)


def _section(data: dict[str, Any] | None, title: str) -> list[str] | None:
    if data is None:
        return []
    if data.get("status") in ("failed", "timeout", "skipped") and not data.get("rows"):
        detail = data.get("reason") or data.get("error") or (data.get("log_tail") or "")[-300:]
        return [f"**{title}**: {data.get('status')} — {detail}".rstrip(), ""]
    return None


def _train_md(data: dict[str, Any] | None) -> list[str]:
    title = f"Training step ({PRESET}, {TRAIN_ENCODER})"
    early = _section(data, title)
    if early is not None:
        return early
    assert data is not None
    lines = [f"**{title}**, 224×224, 8-frame clips; the preset's batch is {data.get('preset_batch')}; "
             "`largest` doubles the batch until out of memory (tried sizes in the JSON).", ""]
    rows = []
    for r in data["rows"]:
        if r.get("status") != "ok":
            rows.append([r["source"], r["precision"], _fmt(r.get("compile")), _fmt(r.get("batch")), _problem(r)]
                        + [""] * 6)
            continue
        which = "preset" if r["which"] == "preset" else f"largest; next: {r.get('stopped_by')}"
        rows.append([r["source"], r["precision"], _fmt(r.get("compile")), f"{r['batch']} ({which})",
                     _fmt(r["steps_per_s"], 3), _fmt(r["clips_per_s"], 1), _fmt(r["ms_per_step"], 1),
                     _fmt(r.get("peak_gib")), _fmt(r.get("gflop_per_step"), 0), _fmt(r.get("tflops"), 1),
                     _pct(r.get("mfu"))])
    lines += _table(["features", "precision", "compile", "batch", "steps/s", "clips/s", "ms/step", "peak GiB",
                     "GFLOP/step", "TFLOPS", "MFU"], rows)
    return [*lines, ""]


def _encoders_md(data: dict[str, Any] | None) -> list[str]:
    title = "Encoders at 480p"
    early = _section(data, title)
    if early is not None:
        return early
    assert data is not None
    rows = []
    for r in data["rows"]:
        if r.get("status") != "ok":
            rows.append([r["model"], r["precision"], _problem(r)] + [""] * 8)
            continue
        rows.append([r["model"], r["precision"], f"{r['batch']} × {r['input']}", _fmt(r["ours_fps"], 1),
                     _fmt(r["timm_fps"], 1), f"**{r['ratio']:.2f}×**", _fmt(r["encode_fps"], 1),
                     _pct(r.get("attention_flop_share")), _pct(r.get("attention_time_share")), _fmt(r.get("peak_gib")),
                     _pct(r.get("mfu"))])
    lines = [f"**{title}**: ours (`TimmViT`, CLS attention recomputed) vs. timm's `forward_features` of the same "
             "model and input; `encode` adds uint8 preprocessing and the host-to-device copy.", ""]
    return lines + _table(["model", "precision", "input", "ours frames/s", "timm frames/s", "ours / timm",
                           "encode frames/s", "attention FLOPs", "attention time", "peak GiB", "MFU"], rows) + [""]


def _eval_md(data: dict[str, Any] | None) -> list[str]:
    title = "Evaluation"
    early = _section(data, title)
    if early is not None:
        return early
    assert data is not None
    rows = [[r["measure"], _fmt(r.get("fps"), 1), _fmt(r.get("seconds"), 1), _fmt(r.get("jf"), 3),
             r.get("what", "") if r.get("status") == "ok" else _problem(r)] for r in data["rows"]]
    lines = [f"**{title}** on {data.get('data')}: {data.get('sequences')} sequences, {data.get('frames')} frames "
             "(J&F of an untrained model: a check that it ran, not a result).", ""]
    return lines + _table(["", "frames/s", "seconds", "J&F", "what"], rows) + [""]


def _ddp_md(data: dict[str, Any] | None, train: dict[str, Any] | None) -> list[str]:
    title = "DDP"
    early = _section(data, title)
    if early is not None:
        return early
    assert data is not None
    single = next((r for r in (train or {}).get("rows", []) if r.get("status") == "ok" and r["source"] == "cached"
                   and r["precision"] == "bf16" and not r.get("compile") and r["which"] == "preset"), None)
    lines = []
    for r in data["rows"]:
        ratio = (f"; {r['clips_per_s_per_process'] / single['clips_per_s']:.2f}× one process's clips/s"
                 if single else "")
        lines.append(f"**{title}** ({r['backend']}, {r['processes']} processes, {r['batch_per_process']} clips each, "
                     f"cached features, bf16): {r['steps_per_s']:.3f} steps/s, "
                     f"{r['clips_per_s_per_process']:.1f} clips/s per process{ratio}.")
    return [*lines, ""]


def _learning_md(data: dict[str, Any] | None, in_results: bool) -> list[str]:
    title = "Learning"
    early = _section(data, title)
    if early is not None:
        return early
    assert data is not None
    lines = [f"**{title}** (demo recipe, {data.get('setup')}; {data.get('steps')} steps in "
             f"{_fmt(data.get('training_budget_s'), 0)} s of budget, evaluated every {data.get('eval_every')}):", "",
             data.get("table") or "(no curve)", ""]
    if in_results:
        lines += ["Against the CPU curve: `demo` under Learning above (stride 16, 192×256, 12×16 features).", ""]
    elif data.get("cpu_curve"):
        cpu = re.sub(r"^#+ (.*)$", r"*\1*", data["cpu_curve"].strip(), flags=re.M)
        lines += ["The CPU curve it is compared with (`benchmarks/RESULTS.md`, stride 16, 192×256, 12×16 features):",
                  "", cpu, ""]
    return lines


if __name__ == "__main__":
    main()
