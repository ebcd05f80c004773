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

__all__ = ["SequenceEntry", "jpeg_data_uri", "overlay_thumbnails", "render_report", "spread", "write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { height: 96px; margin-right: 4px; }
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
    note_html = "".join(f"<p>{esc(n)}</p>" for n in notes or [])
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>{note_html}",
        f'<h2>Global</h2><table class="global"><tr>{head}</tr><tr>{values}</tr></table>',
        "<h2>J&amp;F per sequence</h2>",
        _bar_chart(entries),
        "<h2>Sequences</h2><table><tr><th>sequence</th><th>frames</th><th>J&amp;F</th><th>J</th><th>F</th>"
        "<th>video</th><th>overlays</th></tr>",
        *rows,
        "</table></body></html>",
    ]) + "\n"


def write_report(path: str | Path, title: str, entries: list[SequenceEntry], global_scores: dict[str, float],
                 notes: list[str] | None = None) -> Path:
    """Render the report and write it atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    write_atomic(path, render_report(title, entries, global_scores, notes))
    return path
