"""Training throughput on cached features: ours vs. the original DINOSAVi path, in the same run.

Ours: clip features held in memory as fp16 (``features.in_memory``), every slot x time step decoded in
one batched call (the 1x1 decoder as matrix products). Baseline, as the original code did it: each
clip's features read from a ``diskcache`` store of ``lzma``-compressed ``torch.save(t.half())`` bytes,
and every slot of every time step decoded separately through the broadcast + convolution path.
Both train the same model (the headline preset) with Adam; first, on two clips, the script checks that the
baseline computes the same loss as ours (``SlotModel.clip_loss``) and stops if not. Also times evaluation
per frame (``segment_sequence``) on random features. First, what the ``demo`` recipe's lock-on training
(``model.condition=kmeans``, ``model.track_weight``) costs per step against the same recipe without it.

    python benchmarks/bench_train.py --device cpu --steps 3 [--batch-size 16 --frames 8]
"""

from __future__ import annotations

import argparse
import io
import lzma
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import diskcache
import torch
import torch.nn.functional as F
from einops import rearrange

from dinosavi.evaluation.options import EvalOptions
from dinosavi.evaluation.vos import segment_sequence
from dinosavi.models.decoders import AlphaDecoder
from dinosavi.models.factory import build_model
from dinosavi.models.slot_model import SlotModel

PRESET = "slot-s256d-line-t01-tline-ini5"


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak RSS above the starting RSS (sampled every 2 ms), or peak CUDA memory allocated."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.start = _rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss() - self.start)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self._stop.set()
            self._thread.join()


def baseline_clip_loss(model: SlotModel, features: torch.Tensor) -> torch.Tensor:
    """The original's loss path, written out on the model's parts: frame by frame, slots drawn at the first
    frame and bound with ``ini_iters``, then carried through the predictor and bound with ``num_iters``; each
    slot of each time step decoded on its own through the broadcast + convolution path; the loss the mean over
    time steps ``k`` of the MSE between the prediction of frame ``t + k`` and its features, one of them
    layer-normalised (the prediction by ``model.prediction_norm`` with ``loss_norm=prediction``, else the
    features). The same loss as :meth:`SlotModel.clip_loss` for a model without slot groups, conditioning,
    anchoring or attention blending (the headline preset).

    Args:
        model: the slot model (an alpha decoder, a predictor).
        features: ``(B, T, D, h, w)`` frozen features.

    Returns:
        The scalar loss.
    """
    assert isinstance(model.frame.decoder, AlphaDecoder) and model.predictor is not None
    assert model.bgfg_strategy is None and model.conditioner is None and not model.anchor and model.blend == "alpha"
    B, T, D, h, w = features.shape
    bound = T - max(model.time_steps)
    slots = model.frame.init_slots(B)  # (B, S, C): the draw clip_loss makes first
    per_frame = []
    for t in range(bound):
        if t > 0:
            slots = model.predictor(slots)
        tokens = model.frame.embed(features[:, t])  # (B, N, C)
        slots = model.frame.slot_attention(tokens, slots, model.ini_iters if t == 0 else model.num_iters).slots
        per_frame.append(slots)
    frames = rearrange(torch.stack(per_frame, 1), "b t s c -> (b t) s c")
    decoder = model.frame.decoder
    pe = decoder.pos_embed(h, w, features.device)  # (P, h, w)
    losses = []
    for k, time_decoder in zip(model.time_steps, model.time_decoders):
        future = time_decoder(frames)  # (BT', S, C)
        outs = []
        for s in range(future.shape[1]):  # one slot at a time: broadcast, concatenate PE, convolve
            x = torch.cat([future[:, s, :, None, None].expand(-1, -1, h, w), pe.expand(len(future), -1, -1, -1)], 1)
            for i, conv in enumerate(decoder.convs):
                x = conv(x)
                if i < len(decoder.convs) - 1:
                    x = F.relu(x)
            outs.append(x)
        x = torch.stack(outs, 1)  # (BT', S, D+1, h, w)
        alpha = x[:, :, -1:].softmax(1)
        prediction = rearrange((x[:, :, :-1] * alpha).sum(1), "(b t) d h w -> b t h w d", b=B)
        target = rearrange(features[:, k : k + bound], "b t d h w -> b t h w d")
        if model.prediction_norm is not None:
            prediction = model.prediction_norm(prediction)
        else:
            target = F.layer_norm(target, (D,))
        losses.append(F.mse_loss(prediction, target))
    return torch.stack(losses).mean()


def check_baseline(model: SlotModel, features: torch.Tensor) -> None:
    """Print the loss of :meth:`SlotModel.clip_loss` and of :func:`baseline_clip_loss` on ``features`` from the
    same initial slots; stop unless they agree to float rounding (the baseline is the same objective)."""
    torch.manual_seed(0)
    ours = model.clip_loss(features).loss.item()
    torch.manual_seed(0)
    base = baseline_clip_loss(model, features).item()
    print(f"loss on {features.shape[0]} clips: clip_loss {ours:.6f}, baseline {base:.6f}, "
          f"difference {abs(ours - base):.1e}")
    if abs(ours - base) > 1e-4 * max(1.0, abs(ours)):
        raise SystemExit("the baseline computes another loss than SlotModel.clip_loss")


def time_training(
    model: SlotModel, read: Callable[[list[int]], torch.Tensor], loss_fn: Callable[..., torch.Tensor],
    batches: list[list[int]], warmup: int, device: torch.device,
) -> tuple[float, int]:
    """Steps/s over ``batches[warmup:]`` and the peak memory of one step."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step(ids: list[int]) -> None:
        loss = loss_fn(model, read(ids).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for ids in batches[:warmup]:
        step(ids)
    with PeakMemory(device) as mem:
        step(batches[warmup])
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for ids in batches[warmup:]:
        step(ids)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (len(batches) - warmup) / (time.perf_counter() - t0), mem.peak


def lock_on_cost(args: argparse.Namespace, device: torch.device) -> None:
    """Steps/s of the ``demo`` recipe with its lock-on training vs ``model.condition=none`` (no tracking loss), on
    the same batches: the demo's 16 clips of 3 frames, EfficientNet-Lite0's 320 channels at stride 16 on 192 x 256."""
    from hydra import compose, initialize_config_dir

    clips = torch.randn(8, 3, 320, 12, 16)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, 8, (16,), generator=g).tolist() for _ in range(args.warmup + args.steps)]
    rates = {}
    for name, extra in (("with lock-on training", []), ("without", ["model.condition=none", "model.track_weight=0"])):
        with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "dinosavi" / "conf"),
                                   version_base="1.3"):
            cfg = compose("main", overrides=["hparam=demo", "mode=train", *extra])
        torch.manual_seed(0)
        model = build_model(cfg.model, 320).to(device)
        rates[name], _ = time_training(model, lambda ids: clips[ids], lambda m, f: m.clip_loss(f).loss, batches,
                                       args.warmup, device)
    print(f"demo recipe, batch 16 x 3 frames, 12x16x320 features, {args.device}:")
    for name, rate in rates.items():
        print(f"  {name:22} {rate:8.3f} steps/s {1000 / rate:7.1f} ms/step {rates['without'] / rate:5.2f}x the time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--clips", type=int, default=8, help="distinct cached clips")
    parser.add_argument("--grid", type=int, nargs=2, default=[28, 28])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--eval-frames", type=int, default=4)
    args = parser.parse_args()
    device = torch.device(args.device)
    from hydra import compose, initialize_config_dir

    from dinosavi.cli.config import register_configs

    register_configs()
    lock_on_cost(args, device)
    conf = Path(__file__).resolve().parents[1] / "dinosavi" / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("main", overrides=[f"hparam={PRESET}", "mode=train"])
    torch.manual_seed(0)
    model = build_model(cfg.model, args.dim).to(device)
    h, w = args.grid
    clips = [torch.randn(args.frames, args.dim, h, w) for _ in range(args.clips)]
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, args.clips, (args.batch_size,), generator=g).tolist()
               for _ in range(args.warmup + args.steps)]

    memory = torch.stack(clips).half()  # ours: in-memory fp16

    def read_memory(ids: list[int]) -> torch.Tensor:
        return memory[ids].float()

    with tempfile.TemporaryDirectory() as tmp:
        cache = diskcache.Cache(tmp)
        for i, clip in enumerate(clips):
            buf = io.BytesIO()
            torch.save(clip.half(), buf)
            cache[i] = lzma.compress(buf.getvalue())

        def read_cache(ids: list[int]) -> torch.Tensor:
            return torch.stack([torch.load(io.BytesIO(lzma.decompress(cache[i])), weights_only=True).float()
                                for i in ids])

        with torch.no_grad():
            check_baseline(model, read_memory(batches[0][:2]).to(device))
        state = {k: v.clone() for k, v in model.state_dict().items()}
        ours, ours_mem = time_training(model, read_memory, lambda m, f: m.clip_loss(f).loss, batches,
                                       args.warmup, device)
        model.load_state_dict(state)
        base, base_mem = time_training(model, read_cache, baseline_clip_loss, batches, args.warmup, device)
        cache.close()

    print(f"training, preset {PRESET}: batch {args.batch_size} x {args.frames} frames, {h}x{w}x{args.dim} features, "
          f"{args.device}, {args.steps} timed steps after {args.warmup} warm-up")
    print(f"  ours     {ours:8.3f} steps/s  peak memory/step {ours_mem / 2**20:8.1f} MiB")
    print(f"  baseline {base:8.3f} steps/s  peak memory/step {base_mem / 2**20:8.1f} MiB")
    print(f"  ratio    {ours / base:8.2f}x")

    model.eval()
    feats = torch.randn(args.eval_frames, args.dim, 28, 50)
    labels = torch.zeros(224, 400, dtype=torch.long)
    labels[40:120, 60:200], labels[100:200, 250:380] = 1, 2
    segment_sequence(model, feats[:1], labels, EvalOptions(num_bg_slots=5))  # warm-up
    t0 = time.perf_counter()
    segment_sequence(model, feats, labels, EvalOptions(num_bg_slots=5),
                     generator=torch.Generator(device).manual_seed(0))
    fps = args.eval_frames / (time.perf_counter() - t0)
    print(f"evaluation per frame (28x50 tokens, {args.eval_frames} frames): {fps:.2f} frames/s, "
          f"{1000 / fps:.1f} ms/frame")


if __name__ == "__main__":
    main()
