"""``mode=demo``: two models of one recipe, then their numbers beside references that need no learning.

1. The synthetic model: the ``demo`` preset trained on the synthetic set, evaluated on its val split
   (lock-on and unsupervised) beside k-means on the same features and label propagation with the same
   encoder at the same resolution.
2. The natural-video model: the same recipe trained on the frames (never the masks) of
   ``demo.natural_root`` (the DAVIS-2016 train sequences), ``demo.natural_steps`` steps at
   ``demo.natural_input_size``, evaluated by lock-on on the DAVIS sample beside label propagation.

Lock-on is scored twice: the slots alone (the recipe's ``eval`` keys), and the slots fused with label
propagation's soft labels (``demo.fuse``), which is reported as a fusion. Front door: it builds the encoder
once and reuses it and the trained models.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dinosavi.cli.build import build_resolution, build_sequences
from dinosavi.cli.config import DataConfig, PropagateConfig
from dinosavi.cli.modes import options, save_config, train_from_config
from dinosavi.data.davis import SequenceDataset
from dinosavi.encoders.base import FrozenEncoder
from dinosavi.evaluation.options import EvalOptions
from dinosavi.evaluation.references import kmeans_reference
from dinosavi.evaluation.runner import evaluate_propagation, evaluate_slots
from dinosavi.features.source import FeatureSource
from dinosavi.features.store import FeatureStore
from dinosavi.metrics.results import DiscoveryTable
from dinosavi.models.slot_model import SlotModel

__all__ = ["DemoModels", "EvalSet", "demo_sets", "demo_summary", "kmeans_table", "natural_config",
           "propagation_scores", "run_demo", "slot_scores", "train_demo_models"]


@dataclass
class EvalSet:
    """One annotated split the demo evaluates on: its sequences and their features at the model's eval
    resolution (``folder``: its sub-folder of ``eval/``)."""

    title: str
    folder: str
    dataset: SequenceDataset
    source: FeatureSource


def demo_sets(cfg: DictConfig, encoder: FrozenEncoder, store: FeatureStore | None) -> list[EvalSet]:
    """The synthetic val split at the eval resolution of ``cfg`` (``eval.short_side``) and the DAVIS sample of
    ``demo.davis_root`` at that of :func:`natural_config` (``demo.davis_short_side``), their features read from
    (and written to) ``store``."""

    def source(run: DictConfig) -> FeatureSource:
        return FeatureSource.create(encoder, build_resolution(run, encoder, "eval"), cfg.encoder.batch_size, store)

    davis = DataConfig(name="davis", root=cfg.demo.davis_root, year=cfg.data.year, quality=cfg.data.quality)
    return [EvalSet("synthetic", "synthetic", build_sequences(cfg.data, "val"), source(cfg)),
            EvalSet("DAVIS", "davis", build_sequences(davis, "val"), source(natural_config(cfg)))]


def kmeans_table(cfg: DictConfig, evaluation: EvalSet) -> DiscoveryTable:
    """k-means (K = the model's slot count) on the features of ``evaluation``: a reference that needs no
    learning."""
    k = cfg.model.num_slots if isinstance(cfg.model.num_slots, int) else sum(cfg.model.num_slots)
    return kmeans_reference(evaluation.dataset, evaluation.source, k, cfg.seed)


def propagation_scores(cfg: DictConfig, evaluation: EvalSet, out_dir: Path,
                       eval_options: EvalOptions) -> dict[str, float]:
    """Label propagation (``cfg.propagate``) on the frames and features of ``evaluation``, the slot model's
    resolution: a reference that needs no learning."""
    return evaluate_propagation(evaluation.source, evaluation.dataset, options(cfg.propagate, PropagateConfig),
                                eval_options, out_dir, split="val", name=cfg.propagate.preset)


def natural_config(cfg: DictConfig) -> DictConfig:
    """The natural-video half of the demo: ``cfg``'s recipe trained on the frames of ``demo.natural_root``
    (DAVIS layout, its ``train`` split) for ``demo.natural_steps`` steps at ``demo.natural_input_size``, its
    evaluation at ``demo.davis_short_side`` (so ``mode=eval`` of its checkpoint scores DAVIS as the demo does)."""
    natural = cfg.copy()
    natural.data.name, natural.data.root, natural.data.split = "davis", cfg.demo.natural_root, "train"
    natural.data.clips_per_video = cfg.demo.natural_clips_per_video
    natural.train.max_steps = cfg.demo.natural_steps
    natural.train.save_every = min(cfg.train.save_every, cfg.demo.natural_steps)
    natural.train.input_size = list(cfg.demo.natural_input_size)
    natural.eval.short_side = cfg.demo.davis_short_side
    return natural


@dataclass
class DemoModels:
    """The demo's two trained models (in eval mode), their final checkpoints and the encoder they share."""

    synthetic: SlotModel
    natural: SlotModel
    checkpoints: tuple[Path, Path]
    encoder: FrozenEncoder


def train_demo_models(cfg: DictConfig, run_dir: Path) -> DemoModels:
    """Train the synthetic model (``cfg``, in ``run_dir``) and the natural-video one (:func:`natural_config`, in
    ``run_dir/natural``) with one encoder."""
    ckpt, model, encoder = train_from_config(cfg, run_dir)
    natural_ckpt, natural_model, _ = train_from_config(natural_config(cfg), run_dir / "natural", encoder=encoder)
    return DemoModels(model.eval(), natural_model.eval(), (ckpt, natural_ckpt), encoder)


def slot_scores(cfg: DictConfig, model: SlotModel, evaluation: EvalSet, eval_options: EvalOptions,
                out_dir: Path) -> dict[str, float]:
    """Evaluate a trained model on ``evaluation`` (its global scores); a fusion mixes in ``cfg.propagate``."""
    return evaluate_slots(model, evaluation.source, evaluation.dataset, eval_options, out_dir, split="val",
                          name=cfg.preset, seed=cfg.seed, max_proposals=cfg.score.max_proposals,
                          propagation=options(cfg.propagate, PropagateConfig))


def run_demo(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> dict[str, dict[str, float]]:
    """``mode=demo`` (see the module docstring); returns every evaluation's global scores. ``overrides`` (the
    command line's) are not needed: the demo trains from scratch."""
    save_config(cfg, run_dir)
    models = train_demo_models(cfg, run_dir)
    evals = run_dir / "eval"
    synthetic, davis = demo_sets(cfg, models.encoder, FeatureStore(run_dir / "features", cfg.features.dtype))
    lock_on = options(cfg.eval, EvalOptions)
    fused = replace(lock_on, fuse=cfg.demo.fuse)
    results = {
        "synthetic lock-on": slot_scores(cfg, models.synthetic, synthetic, lock_on, evals / "synthetic"),
        "synthetic fused": slot_scores(cfg, models.synthetic, synthetic, fused, evals / "synthetic-fused"),
        "synthetic unsupervised": slot_scores(cfg, models.synthetic, synthetic, replace(lock_on, lock_on=False),
                                              evals / "synthetic-unsupervised"),
        "synthetic k-means": kmeans_table(cfg, synthetic).global_means(),
        "synthetic propagation": propagation_scores(cfg, synthetic, evals / "synthetic-propagate", lock_on),
        "davis lock-on": slot_scores(cfg, models.natural, davis, lock_on, evals / "davis"),
        "davis fused": slot_scores(cfg, models.natural, davis, fused, evals / "davis-fused"),
        "davis propagation": propagation_scores(cfg, davis, evals / "davis-propagate", lock_on),
    }
    figure = _demo_figure([synthetic, davis], evals, run_dir / "demo.jpg")
    print(f"\nsynthetic model (synthetic video): {models.checkpoints[0]}")
    print(f"natural-video model (the frames of {cfg.demo.natural_root}, no labels): {models.checkpoints[1]}")
    print(demo_summary(results, cfg.model.num_slots, cfg.demo.fuse))
    print(f"figure (ground truth | slots | slots fused with propagation | propagation, frames first/middle/last): "
          f"{figure}")
    return results


def _lock_on_rows(title: str, results: dict[str, dict[str, float]], key: str,
                  fuse: float) -> list[tuple[str, float | None, str | None, bool | None]]:
    """A set's lock-on rows: the slots alone and fused, each against label propagation."""
    prop = results[f"{key} propagation"]["J&F-Mean"]
    reference = f"label propagation {prop:.3f}"
    alone, fused = results[f"{key} lock-on"]["J&F-Mean"], results[f"{key} fused"]["J&F-Mean"]
    return [(title, None, None, None),
            ("  lock-on J&F, slots alone", alone, reference, alone >= prop),
            (f"  lock-on J&F, slots fused with propagation ({fuse:g})", fused, reference, fused >= prop)]


def demo_summary(results: dict[str, dict[str, float]], num_slots: Any, fuse: float) -> str:
    """The demo's numbers beside their references and the targets of a model that binds."""
    unsup, km = results["synthetic unsupervised"], results["synthetic k-means"]
    early, late = unsup["FG-ARI-early"], unsup["FG-ARI-late"]
    rows: list[tuple[str, float | None, str | None, bool | None]] = [
        ("synthetic val, unsupervised (every slot a segment; synthetic model)", None, None, None),
        ("  frame FG-ARI", unsup["FG-ARI-frame"], f"k-means (K={num_slots}) {km['FG-ARI-frame']:.3f}",
         unsup["FG-ARI-frame"] > km["FG-ARI-frame"]),
        ("  video FG-ARI", unsup["FG-ARI"], "target 0.5", unsup["FG-ARI"] >= 0.5),
        ("  frame mBO", unsup["mBO-frame"], f"k-means {km['mBO-frame']:.3f}; target 0.3", unsup["mBO-frame"] >= 0.3),
        ("  video mBO", unsup["mBO"], "", None),
        ("  FG-ARI, first quarter of frames", early, "", None),
        ("  FG-ARI, second half of frames", late,
         (f"{late / early:.2f} x the first quarter" if early > 0 else "the first quarter scores 0")
         + "; target 0.8 x", late >= 0.8 * early),
        *_lock_on_rows("synthetic val (synthetic model)", results, "synthetic", fuse),
        *_lock_on_rows("DAVIS sample (natural-video model)", results, "davis", fuse),
    ]
    lines = [f"{'':60} {'model':>6}  reference (no learning, same encoder and frames)"]
    for name, value, reference, met in rows:
        if value is None:
            lines.append(name)
            continue
        mark = "" if met is None else ("  [met]" if met else "  [missed]")
        lines.append(f"{name:60} {value:6.3f}  {reference}{mark}")
    return "\n".join(lines)



def _demo_figure(sets: list[EvalSet], evals: Path, path: Path) -> Path:
    """Ground truth, the slot model (lock-on), its fusion with label propagation and label propagation alone on
    the first val video of each set."""
    import numpy as np
    from PIL import Image

    from dinosavi.atomic import atomic_path
    from dinosavi.data.davis import read_palette_png
    from dinosavi.viz.figure import FigureBlock, comparison_figure

    blocks = []
    for evaluation in sets:
        seq = evaluation.dataset[0]
        assert seq.labels is not None

        def read(run: str, names: list[str] = seq.frame_names, seq_name: str = seq.name) -> np.ndarray:
            return np.stack([read_palette_png(evals / run / "results" / seq_name / f"{n}.png")[0] for n in names])

        folder = evaluation.folder
        columns = {"ground truth": seq.labels.numpy(), "slots (lock-on)": read(folder),
                   "slots fused with propagation": read(f"{folder}-fused"),
                   "label propagation": read(f"{folder}-propagate")}
        blocks.append(FigureBlock(f"{evaluation.title} {seq.name}", seq.frames.permute(0, 2, 3, 1).numpy(), columns,
                                  seq.palette))
    with atomic_path(path) as tmp:
        Image.fromarray(comparison_figure(blocks)).save(tmp, format="JPEG", quality=88)
    return path
