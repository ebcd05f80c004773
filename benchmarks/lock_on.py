"""The lock-on ablation of ``bench_learning.py --lock-on``: the demo's recipe trained on several seeds, every
lock-on method on the same two models, beside the references that need no learning.

Per seed it trains the two models of ``mode=demo`` with the package's own code (the synthetic model, and the
natural-video one on the frames of the DAVIS-2016 train sequences, :func:`dinosavi.cli.demo.train_demo_models`) and
scores, on the synthetic val videos (synthetic model) and on the DAVIS sample (natural-video model):

- each lock-on method of :data:`METHODS` (options of ``mode=eval``; the recipe is the preset's own ``eval`` keys);
- label propagation with the same encoder, frames and resolution; on the synthetic set also k-means and the
  recipe's unsupervised scores (frame and video FG-ARI, mBO, FG-ARI early/late).

With ``--baseline`` the first seed also trains the recipe without its lock-on training (``model.condition=none``,
no tracking loss: the demo as it was) and scores its lock-on as it was evaluated, so the table shows what the
training change does on its own. Results are written as JSON per seed and summarised as mean ± std.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dinosavi.cli.demo import demo_sets, kmeans_table, propagation_scores, slot_scores, train_demo_models
from dinosavi.cli.modes import options
from dinosavi.evaluation.options import EvalOptions
from dinosavi.features.store import FeatureStore
from dinosavi.utils import seed_everything

# name -> the eval options it changes on top of the recipe's (the preset's eval keys)
METHODS: dict[str, dict[str, Any]] = {
    "random slots carried (before this recipe)": dict(lock_init="random", bg_regions="shared", anchor=0.0),
    "conditioned initialiser, carried": dict(lock_init="mask", bg_regions="shared", anchor=0.0),
    "+ k-means background regions": dict(lock_init="mask", bg_regions="kmeans", anchor=0.0),
    "+ anchored to frame 0 (the recipe)": {},
    "recipe, anchor 0.5": dict(anchor=0.5),
    "recipe + locality prior (2 patches)": dict(locality=2),
    "recipe + background kept off the objects": dict(exclusion=True),
    "recipe + 3 iterations per frame": dict(num_iters=3),
    "recipe, 8 background slots": dict(num_bg_slots=8),
    "by assignment (10 free slots)": dict(lock_init="assign", num_slots=10, anchor=0.0),
    "recipe fused with propagation (demo.fuse)": dict(fuse=None),
}
QUIET = dict(overlays=False, videos=False, report=False)
UNSUPERVISED = ("FG-ARI-frame", "FG-ARI", "mBO-frame", "FG-ARI-early", "FG-ARI-late")


def _method(recipe: EvalOptions, changes: dict[str, Any], fuse: float) -> EvalOptions:
    changes = {k: (fuse if k == "fuse" and v is None else v) for k, v in changes.items()}
    return replace(recipe, **changes, **QUIET)


def run_seed(cfg: DictConfig, out: Path, baseline: bool = False) -> dict[str, Any]:
    """Train the demo's two models with ``cfg`` (its seed) and score every method and reference on both sets."""
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    models = train_demo_models(cfg, out)
    train_minutes = (time.perf_counter() - t0) / 60
    synthetic, davis = demo_sets(cfg, models.encoder, FeatureStore(out / "features", cfg.features.dtype))
    recipe = options(cfg.eval, EvalOptions)
    rows: dict[str, dict[str, float]] = {}
    for index, (name, changes) in enumerate(METHODS.items()):
        method, folder = _method(recipe, changes, cfg.demo.fuse), out / "ablation" / f"{index:02d}"
        rows[name] = {"synthetic": slot_scores(cfg, models.synthetic, synthetic, method, folder / "s")["J&F-Mean"],
                      "davis": slot_scores(cfg, models.natural, davis, method, folder / "d")["J&F-Mean"]}
        print(f"seed {cfg.seed} {name}: {rows[name]}", flush=True)
    quiet = replace(recipe, **QUIET)
    unsupervised = slot_scores(cfg, models.synthetic, synthetic, replace(quiet, lock_on=False), out / "unsupervised")
    references = {
        "label propagation": {"synthetic": propagation_scores(cfg, synthetic, out / "prop-s", quiet)["J&F-Mean"],
                              "davis": propagation_scores(cfg, davis, out / "prop-d", quiet)["J&F-Mean"]},
        "k-means": kmeans_table(cfg, synthetic).global_means(),
        "unsupervised": {k: unsupervised[k] for k in UNSUPERVISED},
    }
    result: dict[str, Any] = {"seed": cfg.seed, "methods": rows, "references": references,
                              "train_minutes": train_minutes, "minutes": (time.perf_counter() - t0) / 60}
    if baseline:
        result["baseline"] = _baseline(cfg, out / "baseline", synthetic, davis)
    (out / "lock-on.json").write_text(json.dumps(result, indent=2))
    return result


def _baseline(cfg: DictConfig, out: Path, synthetic: Any, davis: Any) -> dict[str, float]:
    """The recipe without its lock-on training (no conditioning, no tracking loss), evaluated as before."""
    before = cfg.copy()
    before.model.condition, before.model.track_weight = "none", 0.0
    seed_everything(before.seed)
    models = train_demo_models(before, out)
    method = _method(options(cfg.eval, EvalOptions), METHODS["random slots carried (before this recipe)"], 0.0)
    return {"synthetic": slot_scores(before, models.synthetic, synthetic, method, out / "s")["J&F-Mean"],
            "davis": slot_scores(before, models.natural, davis, method, out / "d")["J&F-Mean"]}


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summary(results: list[dict[str, Any]], setup: str) -> str:
    """The ablation as a Markdown table, mean ± std over the seeds."""
    seeds = ", ".join(str(r["seed"]) for r in results)
    lines = [f"Setup: {setup}; seeds {seeds} (mean ± std over {len(results)}); "
             f"{statistics.mean(r['minutes'] for r in results):.0f} min per seed (training "
             f"{statistics.mean(r['train_minutes'] for r in results):.0f}).", "",
             "| lock-on method | synthetic val J&F (synthetic model) | DAVIS sample J&F (natural-video model) |",
             "|---|---|---|"]
    for name in results[0]["methods"]:
        cells = [_mean_std([r["methods"][name][s] for r in results]) for s in ("synthetic", "davis")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    base = [r["baseline"] for r in results if "baseline" in r]
    if base:
        lines.append(f"| the recipe trained without conditioning or tracking loss, evaluated as before (seed "
                     f"{results[0]['seed']}) | {base[0]['synthetic']:.3f} | {base[0]['davis']:.3f} |")
    prop = [r["references"]["label propagation"] for r in results]
    lines.append(f"| *label propagation (no learning, same features)* | "
                 f"{_mean_std([p['synthetic'] for p in prop])} | {_mean_std([p['davis'] for p in prop])} |")
    unsup = [r["references"]["unsupervised"] for r in results]
    km = [r["references"]["k-means"] for r in results]
    lines += ["", "Unsupervised on the synthetic val videos (the recipe's synthetic model, every slot a segment): "
              + ", ".join(f"{k} {_mean_std([u[k] for u in unsup])}" for k in UNSUPERVISED)
              + f"; k-means frame FG-ARI {_mean_std([k['FG-ARI-frame'] for k in km])}, frame mBO "
              f"{_mean_std([k['mBO-frame'] for k in km])}."]
    return "\n".join(lines)
