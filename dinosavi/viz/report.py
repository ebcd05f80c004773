"""A self-contained ``report.html`` of an evaluation run: scores, a J&F bar chart, overlay thumbnails.

Everything is inline — the chart is SVG, thumbnails are base64 JPEG data URIs, the style is one
``<style>`` block — so the file opens offline and can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from dinosavi.atomic import write_atomic
from dinosavi.viz.overlay import overlay

__all__ = [
    "SequenceEntry",
    "VideoEntry",
    "jpeg_data_uri",
    "overlay_thumbnails",
    "render_report",
    "render_video_report",
    "spread",
    "write_report",
    "write_video_report",
]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { height: 96px; margin-right: 4px; }
img.maps { height: auto; max-width: 100%; }
video { max-width: 100%; }
.global td { font-weight: bold; }
"""


@dataclass
class SequenceEntry:
    """One sequence's row of the report.

    Attributes:
        name: the sequence name.
        num_frames: frames segmented.
        j_mean: mean region similarity over objects and scored frames.
        f_mean: mean boundary F-measure.
        thumbnails: overlay images as ``data:image/jpeg;base64,...`` URIs.
        video: path of the sequence's MP4 relative to the report, or None.
    """

    name: str
    num_frames: int
    j_mean: float
    f_mean: float
    thumbnails: list[str] = field(default_factory=list)
    video: str | None = None

    @property
    def jf_mean(self) -> float:
        return (self.j_mean + self.f_mean) / 2.0


def spread(length: int, count: int) -> list[int]:
    """Up to ``count`` evenly spaced indices into ``range(length)``, first and last included."""
    return sorted({round(float(x)) for x in np.linspace(0, length - 1, min(count, length))})


def jpeg_data_uri(image: np.ndarray, quality: int = 80) -> str:
    """An ``(H, W, 3)`` uint8 image as a base64 JPEG data URI."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def overlay_thumbnails(
    frames: Tensor, labels: np.ndarray, palette: np.ndarray, count: int = 3, height: int = 96
) -> list[str]:
    """Overlays of ``count`` evenly spaced frames, ``height`` pixels high, as JPEG data URIs.

    Args:
        frames: ``(T, 3, H, W)`` uint8 RGB.
        labels: ``(T, H, W)`` integer ids.
        palette: ``(256, 3)`` uint8 colours.
        count: thumbnails (fewer for shorter videos).
        height: thumbnail height in pixels.
    """
    out = []
    for t in spread(len(labels), count):
        image = Image.fromarray(overlay(frames[t].permute(1, 2, 0).numpy(), labels[t], palette))
        width = max(1, round(image.width * height / image.height))
        out.append(jpeg_data_uri(np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))))
    return out


def _page(title: str, notes: list[str] | None, body: list[str]) -> str:
    """A standalone HTML page: ``title`` as heading, ``notes`` as paragraphs, then the ``body`` lines."""
    esc = html.escape
    note_html = "".join(f"<p>{esc(n)}</p>" for n in notes or [])
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>{note_html}",
        *body,
        "</body></html>",
    ]) + "\n"


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.3f}"


def _bar_chart(entries: list[SequenceEntry], bar_width: int = 320) -> str:
    """Horizontal J&F bars, one per sequence, as an inline SVG."""
    row, label_width = 22, max(80, 8 * max(len(e.name) for e in entries))
    height = row * len(entries) + 10
    parts = [f'<svg width="{label_width + bar_width + 60}" height="{height}" '
             f'role="img" aria-label="J&amp;F per sequence">']
    for i, e in enumerate(entries):
        y = 5 + i * row
        value = 0.0 if math.isnan(e.jf_mean) else min(max(e.jf_mean, 0.0), 1.0)
        name = html.escape(e.name)
        parts.append(f'<text x="0" y="{y + 15}" font-size="13">{name}</text>')
        parts.append(f'<rect x="{label_width}" y="{y + 2}" width="{value * bar_width:.1f}" height="{row - 6}" '
                     f'fill="#4a7fb5"><title>{name}: {_fmt(e.jf_mean)}</title></rect>')
        parts.append(f'<text x="{label_width + value * bar_width + 4:.1f}" y="{y + 15}" font-size="12">'
                     f'{_fmt(e.jf_mean)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def render_report(title: str, entries: list[SequenceEntry], global_scores: dict[str, float],
                  notes: list[str] | None = None) -> str:
    """The report as one HTML string with no external references.

    Args:
        title: heading and ``<title>``.
        entries: one per sequence, in table order.
        global_scores: the global DAVIS statistics (``J&F-Mean``, ``J-Mean``, ...).
        notes: lines shown under the title (e.g. the encoder and the protocol).
    """
    if not entries:
        raise ValueError("render_report got no sequences")
    esc = html.escape
    head = "".join(f"<th>{esc(k)}</th>" for k in global_scores)
    values = "".join(f"<td>{_fmt(v)}</td>" for v in global_scores.values())
    rows = []
    for e in entries:
        thumbs = "".join(f'<img src="{uri}" alt="{esc(e.name)} overlay">' for uri in e.thumbnails)
        video = f'<a href="{esc(e.video)}">mp4</a>' if e.video else ""
        rows.append(f"<tr><td>{esc(e.name)}</td><td>{e.num_frames}</td><td>{_fmt(e.jf_mean)}</td>"
                    f"<td>{_fmt(e.j_mean)}</td><td>{_fmt(e.f_mean)}</td><td>{video}</td><td>{thumbs}</td></tr>")
    return _page(title, notes, [
        f'<h2>Global</h2><table class="global"><tr>{head}</tr><tr>{values}</tr></table>',
        "<h2>J&amp;F per sequence</h2>",
        _bar_chart(entries),
        "<h2>Sequences</h2><table><tr><th>sequence</th><th>frames</th><th>J&amp;F</th><th>J</th><th>F</th>"
        "<th>video</th><th>overlays</th></tr>",
        *rows,
        "</table>",
    ])


def write_report(path: str | Path, title: str, entries: list[SequenceEntry], global_scores: dict[str, float],
                 notes: list[str] | None = None) -> Path:
    """Render the report and write it atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    write_atomic(path, render_report(title, entries, global_scores, notes))
    return path


@dataclass
class VideoEntry:
    """One segmented video (``mode=segment``), with no ground truth to score against.

    Attributes:
        name: its output folder.
        source: the video file or frame folder it was read from.
        num_frames: frames segmented.
        size: ``(H, W)`` of the outputs.
        fps: frames per second of the output video.
        seconds: time spent segmenting it.
        video: path of its overlay MP4 relative to the report, or None.
        folders: paths of its output folders relative to the report.
        thumbnails: overlay images as JPEG data URIs.
        maps: slot-map (or soft-label) images as JPEG data URIs.
    """

    name: str
    source: str
    num_frames: int
    size: tuple[int, int]
    fps: float
    seconds: float
    video: str | None = None
    folders: list[str] = field(default_factory=list)
    thumbnails: list[str] = field(default_factory=list)
    maps: list[str] = field(default_factory=list)


def render_video_report(title: str, entries: list[VideoEntry], notes: list[str] | None = None) -> str:
    """The report of segmented videos as one HTML string; the MP4s are linked and played from their
    relative paths, every image is inline.

    Args:
        title: heading and ``<title>``.
        entries: one per video.
        notes: lines shown under the title (method, checkpoint, settings).
    """
    if not entries:
        raise ValueError("render_video_report got no videos")
    esc = html.escape
    rows, sections = [], []
    for e in entries:
        rate = e.num_frames / e.seconds if e.seconds > 0 else math.nan
        video = f'<a href="{esc(e.video)}">mp4</a>' if e.video else ""
        rows.append(f"<tr><td>{esc(e.name)}</td><td>{esc(e.source)}</td><td>{e.num_frames}</td>"
                    f"<td>{e.size[1]}x{e.size[0]}</td><td>{e.fps:.2f}</td><td>{e.seconds:.1f}</td>"
                    f"<td>{rate:.2f}</td><td>{video}</td></tr>")
        parts = [f'<h2 id="{esc(e.name)}">{esc(e.name)}</h2>']
        if e.video:
            parts.append(f'<video controls loop muted src="{esc(e.video)}"></video>')
        parts.append("<p>" + "".join(f'<img src="{uri}" alt="{esc(e.name)} overlay">' for uri in e.thumbnails) + "</p>")
        parts += [f'<p><img class="maps" src="{uri}" alt="{esc(e.name)} maps"></p>' for uri in e.maps]
        if e.folders:
            parts.append("<p>" + " &middot; ".join(f'<a href="{esc(f)}/">{esc(f)}/</a>' for f in e.folders) + "</p>")
        sections.append("\n".join(parts))
    return _page(title, notes, [
        "<table><tr><th>video</th><th>source</th><th>frames</th><th>size</th><th>fps</th><th>seconds</th>"
        "<th>frames/s</th><th>mp4</th></tr>",
        *rows,
        "</table>",
        *sections,
    ])


def write_video_report(path: str | Path, title: str, entries: list[VideoEntry], notes: list[str] | None = None
                       ) -> Path:
    """Render the report of segmented videos and write it atomically."""
    path = Path(path)
    write_atomic(path, render_video_report(title, entries, notes))
    return path
