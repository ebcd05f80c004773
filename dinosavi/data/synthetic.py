"""Synthetic multi-object videos with exact instance masks, written in the DAVIS layout.

Each video shows 2-6 textured shapes (ellipse, rectangle, triangle, hexagon, star) that translate,
bounce off the borders, rotate, scale over time and occlude each other (object k covers objects
< k) over a textured, slowly panning background. Masks hold ids 1..K in creation (= z) order,
0 background; an object fully occluded in a frame is absent from that frame's mask. Every object is
visible (>= ``MIN_VISIBLE_FRACTION`` of the frame) in frame 0.

Everything is drawn from one ``numpy.random.Generator`` per video, so a seed fixes the bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dinosavi.data.davis import write_palette_png

__all__ = ["MIN_VISIBLE_FRACTION", "SyntheticSpec", "ensure_synthetic", "generate_synthetic", "render_video"]

MIN_VISIBLE_FRACTION = 0.015
_SHAPES = ("ellipse", "rectangle", "triangle", "hexagon", "star")
_TEXTURES = ("stripes", "checks", "dots", "noise")
_QUALITY, _YEAR = "480p", "2017"


@dataclass
class SyntheticSpec:
    """What to generate; stored as ``spec.json`` beside the data."""

    num_videos: int = 20
    num_frames: int = 24
    height: int = 192
    width: int = 256
    min_objects: int = 2
    max_objects: int = 6
    val_videos: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= 254:
            raise ValueError(
                f"SyntheticSpec: expected 1 <= min_objects <= max_objects <= 254, "
                f"got {self.min_objects}, {self.max_objects}"
            )
        if not 1 <= self.val_videos < self.num_videos:
            raise ValueError(
                f"SyntheticSpec: expected 1 <= val_videos < num_videos so both splits are non-empty, "
                f"got val_videos={self.val_videos}, num_videos={self.num_videos}"
            )
        if self.num_frames < 1 or min(self.height, self.width) < 32:
            raise ValueError(
                f"SyntheticSpec: expected num_frames >= 1 and height, width >= 32, got "
                f"{self.num_frames} frames of {self.height}x{self.width}"
            )


def _colour(rng: np.random.Generator, hue: float | None = None) -> np.ndarray:
    """A saturated RGB colour in [0, 1] (HSV with random or given hue)."""
    h = rng.random() if hue is None else hue % 1.0
    s, v = rng.uniform(0.5, 1.0), rng.uniform(0.55, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width, 3) float32 in [0, 1]: gradient + stripes or checks + smooth noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (x * np.cos(angle) + y * np.sin(angle)) / max(height, width)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = _colour(rng) * 0.8, _colour(rng) * 0.8
    image = c0 + ramp[..., None] * (c1 - c0)
    period = rng.uniform(12, 40)
    if rng.random() < 0.5:
        theta = rng.uniform(0, np.pi)
        pattern = np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period) > 0
    else:
        pattern = ((x // period).astype(int) + (y // period).astype(int)) % 2 == 1
    alpha = rng.uniform(0.15, 0.35)
    image = np.where(pattern[..., None], (1 - alpha) * image + alpha * _colour(rng), image)
    from scipy import ndimage  # rendering only: the config schema imports SyntheticSpec from here

    coarse = rng.normal(0, 0.08, (height // 16 + 2, width // 16 + 2, 3))
    smooth = ndimage.zoom(coarse, (height / (coarse.shape[0] - 1), width / (coarse.shape[1] - 1), 1), order=1)
    image = image + smooth[:height, :width]
    return np.clip(image, 0, 1).astype(np.float32)


def _polygon(shape: str, rng: np.random.Generator) -> np.ndarray:
    """(V, 2) vertices of a unit-radius polygon."""
    if shape == "triangle":
        angles = np.linspace(0, 2 * np.pi, 4)[:-1] + rng.uniform(-0.3, 0.3, 3)
        radii = np.ones(3)
    elif shape == "hexagon":
        angles, radii = np.linspace(0, 2 * np.pi, 7)[:-1], np.ones(6)
    else:  # star
        points = int(rng.integers(5, 8))
        angles = np.linspace(0, 2 * np.pi, 2 * points + 1)[:-1]
        radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, rng.uniform(0.45, 0.6))
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _inside_polygon(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised over points (u, v)."""
    inside = np.zeros(u.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        crosses = (y0 > v) != (y1 > v)
        x_at = x0 + (v - y0) * (x1 - x0) / (y1 - y0 + 1e-12)
        inside ^= crosses & (u < x_at)
    return inside


@dataclass
class _Object:
    shape: str
    aspect: tuple[float, float]  # half-extent scale along local u, v (ellipse/rectangle)
    vertices: np.ndarray  # (V, 2) unit polygon; empty for ellipse/rectangle
    radius: float  # pixels at scale 1
    centre: np.ndarray  # (2,) x, y in pixels
    velocity: np.ndarray  # (2,) pixels per frame
    angle: float
    spin: float
    scale_amp: float
    scale_freq: float
    scale_phase: float
    texture: str
    colours: tuple[np.ndarray, np.ndarray]
    period: float
    texture_angle: float
    noise: np.ndarray  # (8, 8, 3) colour grid for the "noise" texture


def _unit_area(shape: str, aspect: tuple[float, float], vertices: np.ndarray) -> float:
    if shape == "ellipse":
        return float(np.pi * aspect[0] * aspect[1])
    if shape == "rectangle":
        return float(4 * aspect[0] * aspect[1])
    x, y = vertices[:, 0], vertices[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _new_object(rng: np.random.Generator, index: int, count: int, height: int, width: int) -> _Object:
    shape = _SHAPES[int(rng.integers(len(_SHAPES)))]
    aspect = (1.0, float(rng.uniform(0.5, 1.0)))
    vertices = _polygon(shape, rng) if shape in ("triangle", "hexagon", "star") else np.zeros((0, 2))
    area = rng.uniform(0.03, 0.08) * height * width
    radius = float(np.sqrt(area / _unit_area(shape, aspect, vertices)))
    radius = min(radius, 0.4 * min(height, width))
    margin = 0.6 * radius
    centre = np.array([rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)])
    speed, heading = rng.uniform(1.0, 0.03 * min(height, width)), rng.uniform(0, 2 * np.pi)
    hue = index / count + rng.uniform(-0.05, 0.05)
    return _Object(
        shape=shape,
        aspect=aspect,
        vertices=vertices,
        radius=radius,
        centre=centre,
        velocity=speed * np.array([np.cos(heading), np.sin(heading)]),
        angle=float(rng.uniform(0, 2 * np.pi)),
        spin=float(rng.uniform(-0.08, 0.08)),
        scale_amp=float(rng.uniform(0.1, 0.3)),
        scale_freq=float(rng.uniform(0.02, 0.08)),
        scale_phase=float(rng.uniform(0, 2 * np.pi)),
        texture=_TEXTURES[int(rng.integers(len(_TEXTURES)))],
        colours=(_colour(rng, hue), _colour(rng, hue + 0.5) * 0.6),
        period=float(rng.uniform(5, 14)),
        texture_angle=float(rng.uniform(0, np.pi)),
        noise=rng.uniform(0, 1, (8, 8, 3)),
    )


def _draw(obj: _Object, t: int, image: np.ndarray, labels: np.ndarray, label: int) -> None:
    """Paint ``obj`` at frame ``t`` over ``image`` (H, W, 3) and ``labels`` (H, W) in place."""
    height, width = labels.shape
    scale = 1 + obj.scale_amp * np.sin(2 * np.pi * obj.scale_freq * t + obj.scale_phase)
    reach = float(np.hypot(*obj.aspect)) if obj.shape == "rectangle" else 1.0
    extent = obj.radius * scale * reach + 1
    cx, cy = obj.centre
    x0, x1 = max(int(cx - extent), 0), min(int(np.ceil(cx + extent)) + 1, width)
    y0, y1 = max(int(cy - extent), 0), min(int(np.ceil(cy + extent)) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = x + 0.5 - cx, y + 0.5 - cy
    angle = obj.angle + obj.spin * t
    cos, sin = np.cos(angle), np.sin(angle)
    pu, pv = cos * dx + sin * dy, -sin * dx + cos * dy  # pixels in the object's frame
    u, v = pu / (obj.radius * scale), pv / (obj.radius * scale)
    if obj.shape == "ellipse":
        mask = (u / obj.aspect[0]) ** 2 + (v / obj.aspect[1]) ** 2 <= 1
    elif obj.shape == "rectangle":
        mask = (np.abs(u) <= obj.aspect[0]) & (np.abs(v) <= obj.aspect[1])
    else:
        mask = _inside_polygon(u, v, obj.vertices)
    if not mask.any():
        return
    a, b = obj.colours
    if obj.texture == "stripes":
        along = pu * np.cos(obj.texture_angle) + pv * np.sin(obj.texture_angle)
        colour = np.where((np.sin(2 * np.pi * along / obj.period) > 0)[..., None], a, b)
    elif obj.texture == "checks":
        parity = (np.floor(pu / obj.period) + np.floor(pv / obj.period)) % 2 == 0
        colour = np.where(parity[..., None], a, b)
    elif obj.texture == "dots":
        fu, fv = (pu / obj.period) % 1 - 0.5, (pv / obj.period) % 1 - 0.5
        colour = np.where((fu**2 + fv**2 < 0.09)[..., None], b, a)
    else:
        iu = np.clip(((u + 1) * 4).astype(int), 0, 7)
        iv = np.clip(((v + 1) * 4).astype(int), 0, 7)
        colour = 0.5 * a + 0.5 * obj.noise[iv, iu]
    shade = 1 - 0.25 * np.clip(u**2 + v**2, 0, 1)[..., None]  # a little depth cue
    image[y0:y1, x0:x1][mask] = (colour * shade)[mask]
    labels[y0:y1, x0:x1][mask] = label


def _step(obj: _Object, height: int, width: int) -> None:
    obj.centre = obj.centre + obj.velocity
    for axis, size in ((0, width), (1, height)):
        low, high = 0.6 * obj.radius, size - 0.6 * obj.radius
        if obj.centre[axis] < low or obj.centre[axis] > high:
            obj.velocity[axis] = -obj.velocity[axis]
            obj.centre[axis] = np.clip(obj.centre[axis], low, high)


def render_video(rng: np.random.Generator, spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """Render one video.

    Args:
        rng: Source of all randomness; the same state gives the same bytes.
        spec: Frame count, size and object-count range.

    Returns:
        frames (T, H, W, 3) uint8 RGB and masks (T, H, W) uint8 ids (0 background, 1..K by z-order).
    """
    frames, masks, _ = _render(rng, spec, amodal=False)
    return frames, masks


def _render(
    rng: np.random.Generator, spec: SyntheticSpec, amodal: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`render_video`, plus (T, K, H, W) bool unoccluded object masks when ``amodal``."""
    T, H, W = spec.num_frames, spec.height, spec.width
    count = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    pad = max(8, int(0.01 * T * max(H, W)))
    background = _background(rng, H + 2 * pad, W + 2 * pad)
    pan = rng.uniform(-1, 1, 2) * pad / max(T - 1, 1)
    for _ in range(100):  # rejection sampling: every object clearly visible in frame 0
        objects = [_new_object(rng, k, count, H, W) for k in range(count)]
        probe_image, probe = np.zeros((H, W, 3), np.float32), np.zeros((H, W), np.uint8)
        for k, obj in enumerate(objects):
            _draw(obj, 0, probe_image, probe, k + 1)
        visible = np.bincount(probe.ravel(), minlength=count + 1)[1:]
        if visible.min() >= MIN_VISIBLE_FRACTION * H * W:
            break
    else:  # pragma: no cover - needs an absurd spec (tiny frames, hundreds of objects)
        raise ValueError(
            f"Could not place {count} objects with >= {MIN_VISIBLE_FRACTION:.1%} of a {H}x{W} frame "
            "each visible in frame 0; expected fewer objects or larger frames"
        )
    frames = np.empty((T, H, W, 3), np.uint8)
    masks = np.zeros((T, H, W), np.uint8)
    full = np.zeros((T, count, H, W), bool) if amodal else None
    for t in range(T):
        ox, oy = (pad + pan * t).round().astype(int)
        image = background[oy : oy + H, ox : ox + W].copy()
        for k, obj in enumerate(objects):
            _draw(obj, t, image, masks[t], k + 1)
            if full is not None:
                alone = np.zeros((H, W), np.uint8)
                _draw(obj, t, np.zeros((H, W, 3), np.float32), alone, 1)
                full[t, k] = alone == 1
            _step(obj, H, W)
        image += rng.normal(0, 0.015, image.shape).astype(np.float32)
        frames[t] = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return frames, masks, full


def _write_video(folder: Path, name: str, seed: np.random.SeedSequence, spec: SyntheticSpec) -> None:
    frames, masks = render_video(np.random.default_rng(seed), spec)
    image_dir = folder / "JPEGImages" / _QUALITY / name
    label_dir = folder / "Annotations" / _QUALITY / name
    image_dir.mkdir(parents=True)
    label_dir.mkdir(parents=True)
    for t in range(spec.num_frames):
        Image.fromarray(frames[t]).save(image_dir / f"{t:05d}.jpg", quality=95)
        write_palette_png(label_dir / f"{t:05d}.png", masks[t])


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def generate_synthetic(root: str | Path, spec: SyntheticSpec, num_threads: int = 2) -> Path:
    """Write ``spec.num_videos`` videos to ``root`` in the DAVIS layout, atomically.

    The folder is built in a hidden temporary sibling and renamed into place, so ``root`` either
    does not exist or is complete. Videos are ``synth-0000`` ...; the last ``spec.val_videos`` are
    listed in ``ImageSets/2017/val.txt``, the rest in ``train.txt``.

    Args:
        root: Destination folder; must not exist or be empty.
        spec: What to generate.
        num_threads: Videos rendered and encoded in parallel.

    Returns:
        ``root`` as a Path.

    Raises:
        FileExistsError: ``root`` exists and is not empty (also when another process won the race).
    """
    root = Path(root)
    if _is_nonempty_dir(root) or (root.exists() and not root.is_dir()):
        raise FileExistsError(f"Refusing to overwrite {root}: it exists and is not an empty folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        names = [f"synth-{i:04d}" for i in range(spec.num_videos)]
        seeds = np.random.SeedSequence(spec.seed).spawn(spec.num_videos)
        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            list(pool.map(lambda i: _write_video(tmp, names[i], seeds[i], spec), range(spec.num_videos)))
        split_dir = tmp / "ImageSets" / _YEAR
        split_dir.mkdir(parents=True)
        cut = spec.num_videos - spec.val_videos
        (split_dir / "train.txt").write_text("".join(f"{n}\n" for n in names[:cut]))
        (split_dir / "val.txt").write_text("".join(f"{n}\n" for n in names[cut:]))
        (tmp / "spec.json").write_text(json.dumps(dataclasses.asdict(spec), indent=2) + "\n")
        if root.is_dir():
            root.rmdir()  # empty (checked above); fails if someone filled it meanwhile
        os.replace(tmp, root)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_nonempty_dir(root):
            raise FileExistsError(f"Refusing to overwrite {root}: it was filled while generating") from error
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _check_existing(root: Path, spec: SyntheticSpec) -> None:
    spec_file = root / "spec.json"
    if spec_file.is_file():
        try:
            stored = json.loads(spec_file.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{spec_file} is not valid JSON ({error}); expected a SyntheticSpec") from error
        wanted = dataclasses.asdict(spec)
        differing = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        if differing:
            detail = ", ".join(
                f"{k}: stored {stored.get(k)!r} vs requested {wanted.get(k)!r}" for k in differing
            )
            raise ValueError(
                f"Synthetic data in {root} was generated with a different spec ({detail}); "
                "delete that folder or point data.root at another folder"
            )
    for split in ("train", "val"):
        split_file = root / "ImageSets" / _YEAR / f"{split}.txt"
        if not split_file.is_file():
            raise ValueError(
                f"{root} exists but does not look like a DAVIS-layout folder: {split_file} is missing; "
                "delete it or point data.root at another folder"
            )


def ensure_synthetic(root: str | Path, spec: SyntheticSpec) -> Path:
    """Generate the synthetic set at ``root`` unless it is already there.

    Args:
        root: Dataset folder.
        spec: The wanted spec; compared against ``root/spec.json`` when the folder exists.

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: ``root`` exists but its ``spec.json`` differs from ``spec`` (names the keys) or
            it lacks the split files.
    """
    root = Path(root)
    if not _is_nonempty_dir(root):
        try:
            return generate_synthetic(root, spec)
        except FileExistsError:
            pass  # another process generated it concurrently; validate theirs below
    _check_existing(root, spec)
    return root
