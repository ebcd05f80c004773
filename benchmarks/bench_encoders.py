"""Throughput and peak memory of the ViT-S/8 encoder vs. the original transformers path, same weights.

Ours: timm ViT, SDPA in every block, last-layer CLS attention recomputed from that block's q/k.
Baseline: transformers ``ViTModel`` with ``attn_implementation="eager"`` and ``output_attentions=True``
(every layer's full attention matrix is materialised and returned). Both encode the same uint8 frames
with the same preprocessing; the weights are random (no download) but identical in both models.

Each measurement runs in a fresh subprocess so that CPU peak memory (``ru_maxrss``) is its own; on CUDA
``torch.cuda.max_memory_allocated`` is used.

    python benchmarks/bench_encoders.py [--device cpu|cuda] [--reps 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from dinosavi.encoders.base import ResizeRule
from dinosavi.encoders.hf import timm_to_hf_vit_state_dict
from dinosavi.encoders.registry import build_timm_vit
from dinosavi.encoders.vit import TimmViT

# (name, batch, H, W): 480x854 DAVIS frames resized to a multiple of 8
SETTINGS = {"224": (4, 224, 224), "480p": (1, 480, 856)}


def _models(device: torch.device) -> tuple[TimmViT, torch.nn.Module]:
    import transformers

    torch.manual_seed(0)
    ours = TimmViT(build_timm_vit("vit_small_patch8_224.dino")).to(device)
    config = transformers.ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                    intermediate_size=1536, image_size=224, patch_size=8, layer_norm_eps=1e-6,
                                    qkv_bias=True, hidden_act="gelu")
    hf = transformers.ViTModel(config, add_pooling_layer=False)
    hf.set_attn_implementation("eager")
    assert hf.config._attn_implementation == "eager"
    hf.load_state_dict(timm_to_hf_vit_state_dict(ours.model.state_dict()), strict=True)
    return ours, hf.eval().requires_grad_(False).to(device)


def _worker(impl: str, setting: str, device_name: str, reps: int) -> dict[str, float]:
    device = torch.device(device_name)
    batch, H, W = SETTINGS[setting]
    ours, hf = _models(device)
    rule = ResizeRule(size=(H, W))
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (batch, 3, 480, 854), dtype=torch.uint8, generator=generator)

    @torch.inference_mode()
    def run() -> torch.Tensor:
        if impl == "ours":
            out = ours.encode(frames, rule=rule)
            assert out.cls_attention is not None
            return out.cls_attention
        x = ours.preprocess(frames.to(device), rule)
        res = hf(pixel_values=x, interpolate_pos_encoding=True, output_attentions=True)
        h, w = H // 8, W // 8
        feats = res.last_hidden_state[:, 1:].transpose(1, 2).reshape(batch, -1, h, w).float()
        return res.attentions[-1][:, :, 0, 1:].reshape(batch, -1, h, w).float() + 0 * feats.sum()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    run()  # warm-up
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for _ in range(reps):
        attn = run()
    sync()
    seconds = time.perf_counter() - start
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"fps": batch * reps / seconds, "peak_mb": peak_mb, "rss_before_mb": rss0 / 1024,
            "attn_checksum": float(attn.double().sum())}


def _agreement(device_name: str) -> float:
    """Max |difference| of the CLS attention between the two paths at 224, as a sanity check."""
    device = torch.device(device_name)
    ours, hf = _models(device)
    x = torch.randn(1, 3, 224, 224, device=device)
    with torch.inference_mode():
        a = ours(x).cls_attention
        b = hf(pixel_values=x, output_attentions=True).attentions[-1][:, :, 0, 1:].reshape(1, 6, 28, 28)
    assert a is not None
    return float((a - b).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "SETTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(_worker(args.worker[0], args.worker[1], args.device, args.reps)))
        return

    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} reps={args.reps}")
    print(f"max |CLS attention difference| ours vs. transformers eager at 224: {_agreement(args.device):.2e}")
    for setting in args.settings:
        batch, H, W = SETTINGS[setting]
        results = {}
        for impl in ("transformers-eager", "ours"):
            cmd = [sys.executable, __file__, "--device", args.device, "--reps", str(args.reps),
                   "--threads", str(args.threads), "--worker", impl, setting]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(f"{setting} {impl}: FAILED (rc {proc.returncode}): {proc.stderr.strip()[-500:]}")
                continue
            results[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[impl]
            print(f"{setting} ({batch}x{H}x{W}) {impl:>18}:"
                  f" {r['fps']:8.3f} frames/s ({1 / r['fps']:6.2f} s/frame), "
                  f"peak {'GPU alloc' if args.device.startswith('cuda') else 'RSS'} {r['peak_mb']:8.0f} MiB")
        if len(results) == 2:
            ours, base = results["ours"], results["transformers-eager"]
            print(f"{setting}: speed-up {ours['fps'] / base['fps']:.2f}x, "
                  f"peak memory {base['peak_mb'] / ours['peak_mb']:.2f}x lower")


if __name__ == "__main__":
    main()
