"""report.html: self-contained (no external references), a row and a bar per sequence, thumbnails inline."""

import base64
import io
import math
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

from dinosavi.data.davis import VideoSequence, davis_palette
from dinosavi.viz.outputs import RunOutputs
from dinosavi.viz.report import (
    SequenceEntry,
    VideoEntry,
    jpeg_data_uri,
    overlay_thumbnails,
    render_report,
    render_video_report,
    spread,
    write_report,
    write_video_report,
)

GLOBAL = {"J&F-Mean": 0.5, "J-Mean": 0.4, "F-Mean": 0.6}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_report_is_self_contained(tmp_path):
    entries = [SequenceEntry("swan<1>", 10, 0.8, 0.7, [overlay_thumbnails(
        torch.zeros(2, 3, 20, 30, dtype=torch.uint8), np.zeros((2, 20, 30), np.uint8), davis_palette())[0]],
        "videos/swan.mp4"), SequenceEntry("car", 5, math.nan, math.nan)]
    path = write_report(tmp_path / "report.html", "Run & test", entries, GLOBAL, ["a note"])
    text = path.read_text()
    page = _parse(text)
    assert page.tags.count("svg") == 1 and page.tags.count("rect") == 2
    assert "swan<1>" in "".join(page.text) and "car" in page.text  # escaped, then parsed back
    assert "http://" not in text and "https://" not in text
    assert not [v for k, v in page.attrs if k in ("src", "href") and v and v.startswith("//")]
    srcs = [v or "" for k, v in page.attrs if k == "src"]
    assert len(srcs) == 1 and srcs[0].startswith("data:image/jpeg;base64,")
    thumb = Image.open(io.BytesIO(base64.b64decode(srcs[0].split(",", 1)[1])))
    assert thumb.format == "JPEG" and thumb.height == 96
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_report_needs_sequences():
    with pytest.raises(ValueError, match="no sequences"):
        render_report("t", [], GLOBAL)


def test_video_report_plays_the_mp4_and_shows_images_inline(tmp_path):
    """mode=segment's report: no scores, a row and a player per video, every image inline."""
    uri = jpeg_data_uri(np.zeros((20, 30, 3), np.uint8))
    entries = [VideoEntry("swan<1>", "/data/swan.mp4", 12, (480, 854), 29.97, 4.0, "swan/swan.mp4",
                          ["swan/results", "swan/overlays"], [uri, uri], [uri]),
               VideoEntry("car", "/data/car", 5, (240, 320), 24.0, 0.0)]
    path = write_video_report(tmp_path / "report.html", "Segment & test", entries, ["a note"])
    text = path.read_text()
    page = _parse(text)
    assert page.tags.count("tr") == 3 and page.tags.count("video") == 1  # header + two videos; car has no MP4
    assert "swan<1>" in "".join(page.text) and "854x480" in page.text and "a note" in page.text
    srcs = [v or "" for k, v in page.attrs if k == "src"]
    assert srcs[0] == "swan/swan.mp4" and all(s.startswith("data:image/jpeg;base64,") for s in srcs[1:])
    assert len(srcs) == 4
    assert "http://" not in text and "https://" not in text
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    with pytest.raises(ValueError, match="no videos"):
        render_video_report("t", [])


def test_spread_picks_first_and_last():
    assert spread(10, 3) == [0, 4, 9] or spread(10, 3) == [0, 5, 9]
    assert spread(2, 3) == [0, 1] and spread(1, 3) == [0]


def test_run_outputs_write_video_tensorboard_and_report(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    frames = torch.randint(0, 255, (4, 3, 24, 32), dtype=torch.uint8)
    labels = np.zeros((4, 24, 32), np.uint8)
    labels[:, 4:12, 4:20] = 1
    seq = VideoSequence("toy", frames, torch.from_numpy(labels).long(), davis_palette(), [f"{t:05d}" for t in range(4)])
    outputs = RunOutputs(tmp_path, "toy run")
    j = torch.tensor([[0.5, 0.7]], dtype=torch.float64)
    with ThreadPoolExecutor(2) as pool:
        for future in outputs.add(seq, labels, j, j, pool):
            future.result()
    report = outputs.finish(GLOBAL)
    assert report == tmp_path / "report.html" and "toy" in (tmp_path / "report.html").read_text()
    assert (tmp_path / "videos" / "toy.mp4").is_file()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert outputs.entries[0].j_mean == pytest.approx(0.6)

    off = RunOutputs(tmp_path / "off", "off", videos=False, report=False, tensorboard_frames=0)
    with ThreadPoolExecutor(1) as pool:
        assert off.add(seq, labels, j, j, pool) == []
    assert off.finish(GLOBAL) is None and not (tmp_path / "off").exists()
