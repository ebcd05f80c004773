"""The modes behind the CLI: help, train, eval, convert, demo. Each takes the composed config and a run dir."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from dinosavi.config import MODES, Config

if TYPE_CHECKING:
    from dinosavi.metrics.results import DiscoveryTable

__all__ = [
    "checkpoint_config", "kmeans_at_eval_size", "print_help", "propagation_at_eval_size", "run_convert", "run_demo",
    "run_eval", "run_propagate", "run_segment", "run_train",
]

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).parent / "conf"


def _save_config(cfg: DictConfig, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".config.yaml.tmp"
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tmp.replace(run_dir / "config.yaml")


def _override_keys(overrides: list[str]) -> list[str]:
    """Keys and groups set by command-line ``overrides`` (``hydra.*`` left out)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.key_or_group for o in parsed if not o.key_or_group.startswith("hydra")]


def checkpoint_config(
    cfg: DictConfig, ckpt_config: dict[str, Any], sections: list[str], overrides: list[str]
) -> DictConfig:
    """``cfg`` with ``sections`` taken from a checkpoint's config, command-line settings re-applied.

    Keys the user set on the command line keep the user's value, so ``resume=... train.max_steps=N``
    extends a run and ``encoder.weights=<path>`` points a checkpoint at local weights. A config-group
    choice (``data=davis``, ``hparam=...``) would replace a whole section with its defaults, so for the
    checkpoint's sections it is ignored with a warning: set the keys instead.
    """
    merged = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(merged, dict)
    for section in sections:
        if section not in ckpt_config:
            raise ValueError(f"checkpoint config has no `{section}` section; was it written by dinosavi?")
        merged[section] = ckpt_config[section]
    out = OmegaConf.merge(OmegaConf.structured(Config), merged)
    for key in _override_keys(overrides):
        if key.split(".")[0] not in sections:
            continue
        value = OmegaConf.select(cfg, key)
        if isinstance(value, DictConfig) or key == "hparam":
            log.warning("`%s` is a config group; the checkpoint's `%s` section is kept (set its keys instead)",
                        key, key)
            continue
        OmegaConf.update(out, key, value, merge=False)
    assert isinstance(out, DictConfig)
    return out


def run_train(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Path:
    """``mode=train``: train, or continue the run of ``resume=<checkpoint>``.

    ``overrides`` are the command line's; on resume they are re-applied to the checkpoint's config.
    """
    from dinosavi.checkpoint import load_checkpoint
    from dinosavi.train import train

    if cfg.resume:
        ckpt = load_checkpoint(cfg.resume)
        keep = [k for k in ckpt.config if k not in ("mode", "resume")]
        cfg = checkpoint_config(cfg, _with_data(ckpt.config, cfg), keep, overrides)
    _save_config(cfg, run_dir)
    path = train(cfg, run_dir)
    log.info("final checkpoint: %s", path)
    return path


def _with_data(ckpt_config: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    """A converted original checkpoint's config holds only the clip settings of ``data``; the dataset itself
    (``data.name``, ``data.root``, ...) is the command line's."""
    if "data" not in ckpt_config or "name" in ckpt_config["data"]:
        return ckpt_config
    data = OmegaConf.to_container(cfg.data, resolve=False)
    assert isinstance(data, dict)
    return {**ckpt_config, "data": {**data, **ckpt_config["data"]}}


def run_convert(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Path:
    """``mode=convert``: an original DINOSAVi ``resume=<file>.ckpt`` as a safetensors checkpoint of this package
    (``out=<file>``, else ``<run dir>/<name>.safetensors``), its converted config and the original's config kept.
    """
    from dinosavi.build import build_model
    from dinosavi.checkpoint import load_checkpoint, save_checkpoint
    from dinosavi.original import ORIGINAL_SOURCE

    if not cfg.resume:
        raise ValueError("mode=convert needs resume=<original DINOSAVi .ckpt>")
    ckpt = load_checkpoint(cfg.resume)
    if ckpt.extra.get("source") != ORIGINAL_SOURCE:
        raise ValueError(f"{cfg.resume} is already a dinosavi checkpoint; mode=convert reads original DINOSAVi "
                         f".ckpt files")
    keep = [k for k in ckpt.config if k not in ("mode", "resume")]
    merged = checkpoint_config(cfg, _with_data(ckpt.config, cfg), keep, overrides)
    model = build_model(merged.model, int(ckpt.extra["feature_dim"]))
    model.load_state_dict(ckpt.model, strict=True)
    config = cast(dict[str, Any], OmegaConf.to_container(merged, resolve=True))
    config.update(mode="train", resume=None)
    out = Path(cfg.out) if cfg.out else run_dir / f"{Path(cfg.resume).stem}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, config, ckpt.step, extra=ckpt.extra)
    print(f"{cfg.resume} ({config['preset']}) -> {out}")
    return out


def run_eval(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict[str, float]:
    """``mode=eval``: semi-supervised DAVIS evaluation of ``resume=<checkpoint>``; returns the global scores."""
    if not cfg.resume:
        raise ValueError("mode=eval needs resume=<checkpoint.safetensors>")
    return _evaluate(Path(cfg.resume), cfg, run_dir, overrides)


def _evaluate(ckpt_path: Path, cfg: DictConfig, out_dir: Path, overrides: list[str]) -> dict[str, float]:
    """Evaluate a checkpoint: its model and encoder config, the data and eval options of ``cfg``."""
    from dinosavi.checkpoint import load_checkpoint
    from dinosavi.evaluation.runner import evaluate_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    cfg = checkpoint_config(cfg, ckpt.config, ["preset", "model", "encoder"], overrides)
    _save_config(cfg, out_dir)
    return evaluate_checkpoint(ckpt, cfg, out_dir)


def run_propagate(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """``mode=propagate``: label propagation with the frozen ``encoder`` on a DAVIS-layout split; returns the
    global scores. Writes what ``mode=eval`` writes (PNGs, overlays, videos, CSVs, JSON, report.html).
    """
    from dinosavi.evaluation.propagate import evaluate_propagation

    _save_config(cfg, run_dir)
    return evaluate_propagation(cfg, run_dir)


def run_segment(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Path | None:
    """``mode=segment`` (and ``mode=propagate input=<video>``): segment the videos of ``input=`` with the slot
    model of ``resume=<checkpoint>`` (its model and encoder config) or, with ``method=propagate``, by label
    propagation of ``first_mask``; returns the path of ``report.html``."""
    from dinosavi.evaluation.segment import segment_inputs

    ckpt = None
    if cfg.mode == "propagate":
        cfg = cast(DictConfig, OmegaConf.merge(cfg, {"method": "propagate"}))
    if cfg.method == "slots":
        from dinosavi.checkpoint import load_checkpoint

        if not cfg.resume:
            raise ValueError("mode=segment needs resume=<checkpoint.safetensors> (a slot model), or "
                             "method=propagate first_mask=<palette PNG> with any encoder=")
        ckpt = load_checkpoint(cfg.resume)
        cfg = checkpoint_config(cfg, ckpt.config, ["preset", "model", "encoder"], overrides)
    elif cfg.resume:
        log.warning("method=%s uses no checkpoint; resume=%s is ignored", cfg.method, cfg.resume)
    _save_config(cfg, run_dir)
    return segment_inputs(cfg, run_dir, ckpt)


def run_demo(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict[str, dict[str, float]]:
    """``mode=demo``: train on the synthetic set; evaluate on its val split and on the DAVIS sample, each
    next to the references that need no learning (k-means, label propagation with the same encoder)."""
    from dinosavi.train import train

    _save_config(cfg, run_dir)
    ckpt = train(cfg, run_dir)
    evals = run_dir / "eval"
    store = {"features": {"store": str(run_dir / "features")}}  # each val frame is encoded once
    synthetic = cast(DictConfig, OmegaConf.merge(cfg, {"data": {"split": "val"}}, store))
    davis = cast(DictConfig, OmegaConf.merge(cfg, store, {
        "data": {"name": "davis", "root": cfg.demo.davis_root, "split": "val"},
        "eval": {"short_side": cfg.demo.davis_short_side}}))
    results = {
        "synthetic lock-on": _evaluate(ckpt, synthetic, evals / "synthetic", overrides),
        "synthetic unsupervised": _evaluate(
            ckpt, cast(DictConfig, OmegaConf.merge(synthetic, {"eval": {"lock_on": False}})),
            evals / "synthetic-unsupervised", overrides),
        "synthetic k-means": kmeans_at_eval_size(synthetic).global_means(),
        "synthetic propagation": run_propagate(propagation_at_eval_size(synthetic), evals / "synthetic-propagate"),
        "davis lock-on": _evaluate(ckpt, davis, evals / "davis", overrides),
        "davis propagation": run_propagate(propagation_at_eval_size(davis), evals / "davis-propagate"),
    }
    figure = _demo_figure(synthetic, davis, evals, run_dir / "demo.jpg")
    print(f"\ncheckpoint: {ckpt}")
    print(_demo_summary(results, cfg.model.num_slots))
    print(f"figure (ground truth | slot model | label propagation, frames first/middle/last): {figure}")
    return results


def propagation_at_eval_size(cfg: DictConfig) -> DictConfig:
    """``cfg`` with label propagation at the resolution the slot model is evaluated at (the same features)."""
    from dinosavi.build import build_encoder

    stride = build_encoder(cfg.encoder).patch_size
    return cast(DictConfig, OmegaConf.merge(cfg, {"propagate": {"short_side": cfg.eval.short_side,
                                                                "multiple_of": stride}}))


def kmeans_at_eval_size(cfg: DictConfig) -> DiscoveryTable:
    """k-means (K = the model's slot count) on the val frames at the model's eval resolution, the features
    read from (and written to) ``features.store``."""
    from dinosavi.build import build_encoder, build_sequences, resolve_device
    from dinosavi.encoders.base import ResizeRule
    from dinosavi.evaluation.references import kmeans_reference
    from dinosavi.features.space import FeatureSpace, Resolution
    from dinosavi.features.store import FeatureStore

    encoder = build_encoder(cfg.encoder).to(resolve_device(cfg.device))
    rule = ResizeRule(short_side=cfg.eval.short_side, multiple_of=encoder.patch_size)
    space = FeatureSpace(FeatureStore(cfg.features.store, cfg.features.dtype), encoder, Resolution(rule),
                         cfg.encoder.batch_size)
    k = cfg.model.num_slots if isinstance(cfg.model.num_slots, int) else sum(cfg.model.num_slots)
    return kmeans_reference(build_sequences(cfg.data, "val"), encoder, rule, k, cfg.encoder.batch_size, cfg.seed,
                            space)


def _demo_summary(results: dict[str, dict[str, float]], num_slots: Any) -> str:
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


def _demo_figure(synthetic: DictConfig, davis: DictConfig, evals: Path, path: Path) -> Path:
    """Ground truth, the slot model (lock-on) and label propagation on the first val video of each set."""
    import numpy as np
    from PIL import Image

    from dinosavi.atomic import atomic_path
    from dinosavi.build import build_sequences
    from dinosavi.data.davis import read_palette_png
    from dinosavi.viz.figure import FigureBlock, comparison_figure

    blocks = []
    for name, cfg, folder in (("synthetic", synthetic, "synthetic"), ("DAVIS", davis, "davis")):
        seq = build_sequences(cfg.data, "val")[0]
        assert seq.labels is not None

        def read(run: str, names: list[str] = seq.frame_names, seq_name: str = seq.name) -> np.ndarray:
            return np.stack([read_palette_png(evals / run / "results" / seq_name / f"{n}.png")[0] for n in names])

        columns = {"ground truth": seq.labels.numpy(), "slot model (lock-on)": read(folder),
                   "label propagation": read(f"{folder}-propagate")}
        blocks.append(FigureBlock(f"{name} {seq.name}", seq.frames.permute(0, 2, 3, 1).numpy(), columns,
                                  seq.palette))
    with atomic_path(path) as tmp:
        Image.fromarray(comparison_figure(blocks)).save(tmp, format="JPEG", quality=88)
    return path


def _presets() -> list[tuple[str, str]]:
    out = []
    for path in sorted((CONF_DIR / "hparam").glob("*.yaml")):
        lines = [ln[2:].strip() for ln in path.read_text().splitlines() if ln.startswith("# ") and "@package" not in ln]
        original = any(ln.startswith("Original preset `") for ln in lines)  # the original DINOSAVi's recipes
        out.append((path.stem, ("[original] " if original else "[ours] ") + (lines[0] if lines else "")))
    return out


def print_help(overrides: list[str]) -> None:
    """``mode=help``: modes, presets, config groups and the main options with their values."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("main", overrides=overrides)
    groups = {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml"))
              for g in ("data", "encoder", "eval", "propagate")}
    lines = ["dinosavi: self-supervised video object segmentation with slots on frozen features", "",
             "usage: python -m dinosavi mode=<mode> [group=option] [key=value ...]", "", "modes:"]
    lines += [f"  {name:<8} {text}" for name, text in MODES.items()]
    lines += ["", "presets (hparam=<name>):"]
    lines += [f"  {name:<32} {text}" for name, text in _presets()]
    lines += ["", "config groups:"] + [f"  {g}=<{'|'.join(opts)}>" for g, opts in groups.items()]
    lines += ["", "main options (current values):"]
    for key in ("data.root", "data.split", "data.batch_size", "data.num_workers", "data.frames_per_clip",
                "train.max_steps", "train.save_every", "train.log_every", "train.lr", "device", "exp_name",
                "resume", "seed", "eval.lock_on", "eval.short_side", "eval.num_bg_slots", "eval.num_extra_slots",
                "eval.num_slots", "eval.output", "eval.background_mask", "eval.label_sampling", "eval.track_mode",
                "input", "first_mask", "method", "segment.max_fps", "segment.short_side", "segment.start",
                "segment.stop", "demo.davis_root", "demo.davis_short_side"):
        lines.append(f"  {key:<24} {OmegaConf.select(cfg, key)}")
    lines += ["", "run directory: outputs/<exp_name>/<timestamp>/ (hydra.run.dir=<dir> to choose)",
              "every key: python -m dinosavi mode=train --cfg job"]
    print("\n".join(lines))
