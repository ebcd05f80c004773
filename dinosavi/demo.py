"""``mode=demo``: train on the synthetic set, then evaluate the trained model on its val split and on the
DAVIS sample, each next to the references that need no learning (k-means on the same features, label
propagation with the same encoder at the same resolution), and print the numbers with the targets of a
model that binds. Front door: it builds everything once (encoder, model, feature sources) and reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dinosavi.build import build_sequences, input_size
from dinosavi.config import DataConfig, PropagateConfig
from dinosavi.data.davis import SequenceDataset
from dinosavi.encoders.base import FrozenEncoder
from dinosavi.evaluation.options import EvalOptions
from dinosavi.evaluation.propagate import evaluate_propagation
from dinosavi.evaluation.references import kmeans_reference
from dinosavi.evaluation.runner import evaluate_slots
from dinosavi.features.source import FeatureSource, resolution
from dinosavi.features.store import FeatureStore
from dinosavi.metrics.results import DiscoveryTable
from dinosavi.modes import options, save_config, train_from_config

__all__ = ["EvalSet", "demo_sets", "demo_summary", "kmeans_table", "propagation_scores", "run_demo"]


@dataclass
class EvalSet:
    """One annotated split the demo evaluates on: its sequences and their features at the model's eval
    resolution (``folder``: its sub-folder of ``eval/``)."""

    title: str
    folder: str
    dataset: SequenceDataset
    source: FeatureSource


def demo_sets(cfg: DictConfig, encoder: FrozenEncoder, store: FeatureStore | None) -> list[EvalSet]:
    """The synthetic val split (at ``eval.short_side``) and the DAVIS sample of ``demo.davis_root`` (at
    ``demo.davis_short_side``), their features read from (and written to) ``store``."""
    size = input_size(cfg)

    def source(short_side: int | None) -> FeatureSource:
        return FeatureSource.create(encoder, resolution("eval", size, short_side, encoder.patch_size),
                                    cfg.encoder.batch_size, store)

    davis = DataConfig(name="davis", root=cfg.demo.davis_root, year=cfg.data.year, quality=cfg.data.quality)
    return [EvalSet("synthetic", "synthetic", build_sequences(cfg.data, "val"), source(cfg.eval.short_side)),
            EvalSet("DAVIS", "davis", build_sequences(davis, "val"), source(cfg.demo.davis_short_side))]


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


def run_demo(cfg: DictConfig, run_dir: Path) -> dict[str, dict[str, float]]:
    """``mode=demo`` (see the module docstring); returns every evaluation's global scores."""
    save_config(cfg, run_dir)
    ckpt, model, encoder = train_from_config(cfg, run_dir)
    model.eval()
    evals = run_dir / "eval"
    synthetic, davis = demo_sets(cfg, encoder, FeatureStore(run_dir / "features", cfg.features.dtype))
    lock_on = options(cfg.eval, EvalOptions)
    name = f"{cfg.preset} (step {cfg.train.max_steps})"

    def evaluate(evaluation: EvalSet, eval_options: EvalOptions, folder: str) -> dict[str, float]:
        return evaluate_slots(model, evaluation.source, evaluation.dataset, eval_options, evals / folder,
                              split="val", name=name, seed=cfg.seed, max_proposals=cfg.score.max_proposals)

    results = {"synthetic lock-on": evaluate(synthetic, lock_on, "synthetic"),
               "synthetic unsupervised": evaluate(synthetic, replace(lock_on, lock_on=False), "synthetic-unsupervised")}
    results |= {"synthetic k-means": kmeans_table(cfg, synthetic).global_means(),
                "synthetic propagation": propagation_scores(cfg, synthetic, evals / "synthetic-propagate", lock_on),
                "davis lock-on": evaluate(davis, lock_on, "davis"),
                "davis propagation": propagation_scores(cfg, davis, evals / "davis-propagate", lock_on)}
    figure = _demo_figure([synthetic, davis], evals, run_dir / "demo.jpg")
    print(f"\ncheckpoint: {ckpt}")
    print(demo_summary(results, cfg.model.num_slots))
    print(f"figure (ground truth | slot model | label propagation, frames first/middle/last): {figure}")
    return results


def demo_summary(results: dict[str, dict[str, float]], num_slots: Any) -> str:
    """The demo's numbers beside their references and the targets of a model that binds."""
    unsup, km = results["synthetic unsupervised"], results["synthetic k-means"]
    early, late = unsup["FG-ARI-early"], unsup["FG-ARI-late"]
    rows = [
        ("synthetic val, unsupervised (every slot a segment)", None, None, None),
        ("  frame FG-ARI", unsup["FG-ARI-frame"], f"k-means (K={num_slots}) {km['FG-ARI-frame']:.3f}",
         unsup["FG-ARI-frame"] > km["FG-ARI-frame"]),
        ("  video FG-ARI", unsup["FG-ARI"], "target 0.5", unsup["FG-ARI"] >= 0.5),
        ("  frame mBO", unsup["mBO-frame"], f"k-means {km['mBO-frame']:.3f}; target 0.3", unsup["mBO-frame"] >= 0.3),
        ("  video mBO", unsup["mBO"], "", None),
        ("  FG-ARI, first quarter of frames", early, "", None),
        ("  FG-ARI, second half of frames", late, f"{late / early:.2f} x the first quarter; target 0.8 x",
         late >= 0.8 * early),
        ("synthetic val, lock-on J&F", results["synthetic lock-on"]["J&F-Mean"],
         f"label propagation {results['synthetic propagation']['J&F-Mean']:.3f}",
         results["synthetic lock-on"]["J&F-Mean"] >= results["synthetic propagation"]["J&F-Mean"]),
        ("DAVIS sample, lock-on J&F", results["davis lock-on"]["J&F-Mean"],
         f"label propagation {results['davis propagation']['J&F-Mean']:.3f}",
         results["davis lock-on"]["J&F-Mean"] >= results["davis propagation"]["J&F-Mean"]),
    ]
    lines = [f"{'':52} {'model':>6}  reference (no learning, same encoder and frames)"]
    for name, value, reference, met in rows:
        if value is None:
            lines.append(name)
            continue
        mark = "" if met is None else ("  [met]" if met else "  [missed]")
        lines.append(f"{name:52} {value:6.3f}  {reference}{mark}")
    return "\n".join(lines)



def _demo_figure(sets: list[EvalSet], evals: Path, path: Path) -> Path:
    """Ground truth, the slot model (lock-on) and label propagation on the first val video of each set."""
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
        columns = {"ground truth": seq.labels.numpy(), "slot model (lock-on)": read(folder),
                   "label propagation": read(f"{folder}-propagate")}
        blocks.append(FigureBlock(f"{evaluation.title} {seq.name}", seq.frames.permute(0, 2, 3, 1).numpy(), columns,
                                  seq.palette))
    with atomic_path(path) as tmp:
        Image.fromarray(comparison_figure(blocks)).save(tmp, format="JPEG", quality=88)
    return path
