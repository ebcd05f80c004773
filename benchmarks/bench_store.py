"""Benchmark reading an 8-frame clip of ViT-S/8 features from the feature store vs. the original format.

Data: 8 DAVIS frames at 224x224 encoded by ViT-S/8 (``vit_small_patch8_224.dino`` architecture with
RANDOM weights: no download) -> features ``(8, 384, 28, 28)`` and CLS attention ``(8, 6, 28, 28)``.
Ours: ``dinosavi.features.store`` (fp16 safetensors shard, CRC32-verified on every read).
Baseline: the original code's format, per frame ``lzma(torch.save({features, attention}.half()))`` in a
``diskcache.Cache``. Both read warm from the page cache, in the same process.

Run from the repository root: ``python benchmarks/bench_store.py [--repeats 30]``.
"""

from __future__ import annotations

import argparse
import io
import lzma
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dinosavi.data.davis import read_frames
from dinosavi.encoders.base import ResizeRule
from dinosavi.encoders.registry import build_timm_vit
from dinosavi.encoders.vit import TimmViT
from dinosavi.features.digests import file_digest
from dinosavi.features.space import FeatureSpace, Resolution
from dinosavi.features.store import FeatureStore

DATA = Path("/work/shared/data/davis-sample/JPEGImages/480p/blackswan")


def baseline_write(cache, keys: list[str], features: torch.Tensor, attention: torch.Tensor) -> int:
    """Store each frame as lzma-compressed ``torch.save`` of fp16 tensors; returns the value bytes."""
    total = 0
    for key, f, a in zip(keys, features, attention):
        buffer = io.BytesIO()
        torch.save({"features": f.half().clone(), "attention": a.half().clone()}, buffer)
        value = lzma.compress(buffer.getvalue())
        cache[key] = value
        total += len(value)
    return total


def baseline_read(cache, keys: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    frames = [torch.load(io.BytesIO(lzma.decompress(cache[k])), weights_only=True) for k in keys]
    return (torch.stack([f["features"] for f in frames]).float(),
            torch.stack([f["attention"] for f in frames]).float())


def timed(fn, repeats: int) -> float:
    """Best-of-3 mean seconds per call."""
    fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    import diskcache

    torch.manual_seed(0)
    paths = sorted(DATA.glob("*.jpg"))[:8]
    encoder = TimmViT(build_timm_vit("vit_small_patch8_224.dino")).freeze()
    space_res = Resolution(ResizeRule(size=(224, 224)))
    with tempfile.TemporaryDirectory() as tmp:
        space = FeatureSpace(FeatureStore(Path(tmp) / "store"), encoder, space_res, batch_size=8)
        t0 = time.perf_counter()
        out = space.encode(read_frames(paths))
        print(f"encoded 8 frames with random-weight ViT-S/8 in {time.perf_counter() - t0:.1f} s: features "
              f"{tuple(out.features.shape)}, CLS attention {tuple(out.cls_attention.shape)}")  # type: ignore[union-attr]
        digests = [file_digest(p) for p in paths]
        shard = space.write("blackswan", digests, out)
        ours_bytes = shard.stat().st_size / len(paths)

        cache = diskcache.Cache(str(Path(tmp) / "baseline"))
        assert out.cls_attention is not None
        base_bytes = baseline_write(cache, digests, out.features, out.cls_attention) / len(paths)

        stored = space.read(digests)
        base_f, base_a = baseline_read(cache, digests)
        assert stored is not None and torch.equal(stored.features, base_f)
        assert stored.cls_attention is not None and torch.equal(stored.cls_attention, base_a)

        ours = timed(lambda: space.read(digests), args.repeats)
        base = timed(lambda: baseline_read(cache, digests), max(1, args.repeats // 5))
        cache.close()

    print(f"{'format':<40} {'ms/clip':>9} {'clips/s':>9} {'bytes/frame':>12}")
    print(f"{'ours (safetensors fp16 + CRC32)':<40} {ours * 1e3:9.2f} {1 / ours:9.1f} {ours_bytes:12,.0f}")
    print(f"{'baseline (lzma torch.save in diskcache)':<40} {base * 1e3:9.2f} {1 / base:9.1f} {base_bytes:12,.0f}")
    print(f"read speed-up: {base / ours:.1f}x (target >= 10x); size ratio ours/baseline: "
          f"{ours_bytes / base_bytes:.2f} (target <= 1.2); random weights, so features are close to "
          "incompressible noise for lzma")


if __name__ == "__main__":
    main()
