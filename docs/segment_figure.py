"""Make ``docs/segment-blackswan.jpg``, the README's picture of ``mode=segment``, from real runs.

It turns a DAVIS sample sequence into an ``.mp4`` with PyAV, runs the three commands of the README's
"Segment your own video" section on it through the CLI, and tiles three frames of each run's overlays:
one row per run (unsupervised slots, lock-on from the first mask, label propagation).

    python docs/segment_figure.py --checkpoint outputs/demo/<timestamp>/checkpoints/last.safetensors

Options: ``--davis`` (the DAVIS sample, default ``../shared/data/davis-sample``), ``--sequence``
(``blackswan``), ``--out`` (the JPEG), ``--work`` (where the video and the runs go).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
ROWS = (("unsupervised", "slots, unsupervised: every slot a segment"), ("lock-on", "slots, lock-on from first_mask"),
        ("propagate", "method=propagate, efficientnet_lite0"))
TILE_HEIGHT = 180


def _run(*args: str) -> None:
    print("$ python -m dinosavi", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "dinosavi", *args], cwd=REPO, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a slot-model checkpoint (e.g. mode=demo's)")
    parser.add_argument("--davis", type=Path, default=REPO.parent / "shared" / "data" / "davis-sample")
    parser.add_argument("--sequence", default="blackswan")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "segment-blackswan.jpg")
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "segment-figure")
    args = parser.parse_args()

    from dinosavi.data.davis import read_frames
    from dinosavi.viz.video import write_video

    frames_dir = args.davis / "JPEGImages" / "480p" / args.sequence
    mask = args.davis / "Annotations" / "480p" / args.sequence / "00000.png"
    video = args.work / f"{args.sequence}.mp4"
    if not video.is_file():
        frames = read_frames(sorted(frames_dir.glob("*.jpg")))
        write_video(video, (f.permute(1, 2, 0).numpy() for f in frames), fps=24)  # DAVIS is 24 fps
    runs = {name: args.work / name for name, _ in ROWS}
    _run("mode=segment", f"input={video}", f"resume={args.checkpoint}", f"hydra.run.dir={runs['unsupervised']}")
    _run("mode=segment", f"input={video}", f"resume={args.checkpoint}", f"first_mask={mask}",
         f"hydra.run.dir={runs['lock-on']}")
    _run("mode=segment", f"input={video}", "method=propagate", f"first_mask={mask}", "encoder=efficientnet_lite0",
         f"hydra.run.dir={runs['propagate']}")

    rows = []
    for name, label in ROWS:
        overlays = sorted((runs[name] / "overlays" / args.sequence).glob("*.jpg"))
        picks = [overlays[i] for i in np.linspace(0, len(overlays) - 1, 3).round().astype(int)]
        tiles = []
        for path in picks:
            image = Image.open(path).convert("RGB")
            tiles.append(image.resize((round(image.width * TILE_HEIGHT / image.height), TILE_HEIGHT),
                                      Image.Resampling.LANCZOS))
        row = Image.new("RGB", (sum(t.width for t in tiles), TILE_HEIGHT), "white")
        x = 0
        for tile in tiles:
            row.paste(tile, (x, 0))
            x += tile.width
        draw = ImageDraw.Draw(row)
        draw.rectangle((0, 0, 8 + draw.textlength(label), 18), fill="white")
        draw.text((4, 3), label, fill="black")
        rows.append(row)
    figure = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for row in rows:
        figure.paste(row, (0, y))
        y += row.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, format="JPEG", quality=80, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB); reports: "
          + ", ".join(str(r / "report.html") for r in runs.values()))


if __name__ == "__main__":
    main()
