"""The modes behind the CLI (listed once in :data:`dinosavi.cli.config.MODES`): each takes the composed config, the run
directory and the command line's overrides, builds what it needs (:mod:`dinosavi.cli.build`) and calls the
package with built objects and typed options. This is the front door: below it nothing reads a config.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from omegaconf import DictConfig, OmegaConf

from dinosavi.atomic import write_atomic
from dinosavi.cli.config import checkpoint_config, resolve_split, with_data

if TYPE_CHECKING:
    from dinosavi.data.inputs import FrameStream
    from dinosavi.encoders.base import FrozenEncoder
    from dinosavi.evaluation.segment import Segmenter
    from dinosavi.models.slot_model import SlotModel
    from dinosavi.training.checkpoint import Checkpoint

__all__ = [
    "EVAL_SECTIONS", "evaluate_model", "options", "run_cache", "run_convert", "run_eval", "run_export",
    "run_propagate", "run_score", "run_segment", "run_train",
    "save_config", "train_from_config",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# what mode=eval and mode=segment take from a checkpoint: the recipe's model, its encoder and its evaluation
# defaults (eval.short_side, slot counts, ...), which the command line's eval=<protocol> and eval.* override
EVAL_SECTIONS = ["preset", "model", "encoder", "eval"]


def options(node: Any, kind: type[_T]) -> _T:
    """A config section as the typed options it is the schema of (checked by their ``__post_init__``)."""
    value = OmegaConf.to_object(node) if isinstance(node, DictConfig) else node
    if not isinstance(value, kind):
        raise TypeError(f"expected a {kind.__name__} section, got {type(value).__name__}")
    return value


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    """The resolved config as ``<run dir>/config.yaml``, atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def _load(cfg: DictConfig, overrides: list[str], sections: list[str] | None = None) -> tuple[Checkpoint, DictConfig]:
    """The checkpoint of ``resume=`` (loaded once) and ``cfg`` with its ``sections`` (e.g. :data:`EVAL_SECTIONS`),
    or with ``sections`` None every section but ``mode``/``resume`` (training continues the recipe)."""
    from dinosavi.training.loading import load_checkpoint

    ckpt = load_checkpoint(cfg.resume)
    if sections is None:
        sections = [k for k in ckpt.config if k not in ("mode", "resume")]
        return ckpt, checkpoint_config(cfg, with_data(ckpt.config, cfg), sections, overrides, cfg.resume)
    return ckpt, checkpoint_config(cfg, ckpt.config, sections, overrides, cfg.resume)


def _encoder(cfg: DictConfig) -> FrozenEncoder:
    from dinosavi.cli.build import build_encoder, resolve_device

    return build_encoder(cfg.encoder).to(resolve_device(cfg.device))


def run_train(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Path:
    """``mode=train``: train, or continue the run of ``resume=<checkpoint>``; returns the final checkpoint.

    ``overrides`` are the command line's; on resume they are re-applied to the checkpoint's config.
    """
    ckpt = None
    if cfg.resume:
        ckpt, cfg = _load(cfg, overrides)
    save_config(cfg, run_dir)
    path, _, _ = train_from_config(cfg, run_dir, ckpt)
    log.info("final checkpoint: %s", path)
    return path


def train_from_config(
    cfg: DictConfig, run_dir: Path, resume: Checkpoint | None = None, encoder: FrozenEncoder | None = None
) -> tuple[Path, SlotModel, FrozenEncoder]:
    """Build the encoder (unless given, built from ``cfg.encoder``), the model and the training clips of ``cfg``
    (in this order: the model's initialisation draws from the seeded RNG) and train; returns the final
    checkpoint, the trained model and the encoder. Under ``torchrun`` the process group is joined first and
    left at the end."""
    from dinosavi.cli.build import (
        build_encoder,
        build_feature_source,
        build_model,
        build_training_clips,
        check_feature_width,
        check_model_encoder,
        ensure_dataset,
        resolve_device,
    )
    from dinosavi.data.badfiles import BadFileIndex, SkipLog
    from dinosavi.training.distributed import Distributed
    from dinosavi.training.loop import train
    from dinosavi.training.options import TrainOptions

    train_options = options(cfg.train, TrainOptions)
    ddp = Distributed.from_env()
    try:
        device = ddp.start(resolve_device(cfg.device))
        ensure_dataset(cfg.data)  # a wrong data.root fails before the encoder's weights are fetched
        encoder = (build_encoder(cfg.encoder) if encoder is None else encoder).to(device)
        check_model_encoder(cfg.model, encoder, cfg.preset)
        if resume is not None:
            check_feature_width(resume, encoder)
        model = build_model(cfg.model, encoder.feature_dim).to(device)
        source = build_feature_source(cfg, encoder, "train")
        bad_files = BadFileIndex(cfg.data.root)
        clips = build_training_clips(cfg, source, known_bad=bad_files.load())
        skipped = SkipLog(cfg.data.root, clips.num_found, cfg.data.max_bad_fraction, bad_files)
        config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
        path = train(model, clips, source, train_options, run_dir, batch_size=cfg.data.batch_size,
                     num_workers=cfg.data.num_workers, seed=cfg.seed, config=config, resume=resume, skipped=skipped,
                     ddp=ddp)
    finally:
        ddp.close()
    return path, model, encoder


def run_eval(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict[str, float]:
    """``mode=eval``: evaluate ``resume=<checkpoint>`` (its model, encoder and evaluation defaults; the data of
    ``cfg``, and the eval options set on the command line) on an annotated split; returns the global scores."""
    from dinosavi.cli.build import load_model

    if not cfg.resume:
        raise ValueError("mode=eval needs resume=<checkpoint.safetensors>")
    ckpt, cfg = _load(cfg, overrides, EVAL_SECTIONS)
    save_config(cfg, run_dir)
    encoder = _encoder(cfg)
    model = load_model(ckpt, cfg.model, encoder)
    return evaluate_model(cfg, model, encoder, run_dir, f"{cfg.preset} (step {ckpt.step})")


def evaluate_model(cfg: DictConfig, model: SlotModel, encoder: FrozenEncoder, out_dir: Path,
                   name: str) -> dict[str, float]:
    """Evaluate a built model on the split of ``cfg.data`` with the options of ``cfg.eval`` (lock-on or
    unsupervised), the features from ``features.store`` when set; returns the global scores."""
    from dinosavi.cli.build import build_feature_source, build_sequences, ensure_dataset
    from dinosavi.evaluation.options import EvalOptions, ScoreOptions
    from dinosavi.evaluation.runner import evaluate_slots

    eval_options = options(cfg.eval, EvalOptions)
    max_proposals = options(cfg.score, ScoreOptions).max_proposals
    if not Path(cfg.data.root).exists():
        ensure_dataset(cfg.data)  # the synthetic set is generated on first use; an existing folder is read as is
    split = resolve_split(cfg.data, "eval")
    dataset = build_sequences(cfg.data, split)
    source = build_feature_source(cfg, encoder, "eval")
    from dinosavi.evaluation.anchors import ANCHOR_PROTOCOLS, evaluate_anchor

    if eval_options.protocol in ANCHOR_PROTOCOLS:  # eval=videosaur|slotcontrast: the anchors' scoring
        return evaluate_anchor(model, source, dataset, ANCHOR_PROTOCOLS[eval_options.protocol], eval_options,
                               out_dir, split=split, name=name, seed=cfg.seed)
    return evaluate_slots(model, source, dataset, eval_options, out_dir, split=split, name=name, seed=cfg.seed,
                          max_proposals=max_proposals)


def run_propagate(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict[str, float] | Path | None:
    """``mode=propagate``: label propagation with the frozen ``encoder`` on a DAVIS-layout split (the global
    scores; it writes what ``mode=eval`` writes), or of ``first_mask`` through the video of ``input=``
    (as ``mode=segment method=propagate``; the report's path)."""
    if cfg.input:
        return run_segment(cfg, run_dir, overrides)
    save_config(cfg, run_dir)
    from dinosavi.cli.build import build_feature_source, build_sequences
    from dinosavi.cli.config import PropagateConfig
    from dinosavi.evaluation.options import EvalOptions
    from dinosavi.evaluation.runner import evaluate_propagation

    params = options(cfg.propagate, PropagateConfig)
    split = resolve_split(cfg.data, "propagate")
    dataset = build_sequences(cfg.data, split)
    source = build_feature_source(cfg, _encoder(cfg), "propagate")
    return evaluate_propagation(source, dataset, params, options(cfg.eval, EvalOptions), run_dir, split=split,
                                name=params.preset)


def run_cache(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """``mode=cache``: store the features (and CLS attention) of ``data`` at ``features.resolutions``; writes
    what it did to ``<run dir>/cache.json`` and returns it."""
    from dinosavi.cli.build import DATASETS, build_resolution, build_source_groups, check_data_root
    from dinosavi.features.cache import cache_features
    from dinosavi.features.space import FeatureSpace
    from dinosavi.features.store import FeatureStore

    if not cfg.features.store:
        raise ValueError("mode=cache needs features.store=<folder>")
    names = list(cfg.features.resolutions)  # checked by cli.checks
    check_data_root(cfg.data)
    if DATASETS[cfg.data.name].sequences is None and "eval" in names:  # no annotations: never evaluated
        log.info("data=%s: the eval resolution applies to annotated data only; caching train", cfg.data.name)
        names.remove("eval")
        if not names:
            raise ValueError(f"data={cfg.data.name} caches the train resolution only; set features.resolutions=[train]")
    save_config(cfg, run_dir)
    encoder = _encoder(cfg)
    groups = build_source_groups(cfg.data)
    with FeatureStore(cfg.features.store, cfg.features.dtype, flush_every=5.0) as store:
        spaces = [FeatureSpace(store, encoder, build_resolution(cfg, encoder, n), cfg.encoder.batch_size)
                  for n in names]
        log.info("caching %d groups of %s at %s into %s (%s)", len(groups), cfg.data.root, names, store.root,
                 cfg.features.dtype)
        stats = cache_features(store, spaces, groups)
    log.info("cached %d frames x %d resolutions in %.1f s (%.1f frames/s); encoded %d, %d entries in the store",
             stats.frames, len(spaces), stats.seconds, stats.frames / max(stats.seconds, 1e-9), stats.encoded,
             len(store))
    summary = {"store": str(store.root), "data": str(cfg.data.root), "resolutions": names, "groups": len(groups),
               "frames": stats.frames, "encoded": stats.encoded, "seconds": stats.seconds, "entries": len(store)}
    write_atomic(run_dir / "cache.json", json.dumps(summary, indent=2) + "\n")
    return summary


def run_score(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict[str, float]:
    """``mode=score``: score ``results=`` against ``data.root``, write the CSVs and JSON into the run directory,
    print; returns the global scores (``J&F-Mean``, ``J-Mean``, ... as in the official CSV). ``results=`` is a
    folder of ``<seq>/<frame>.png``, or the run directory of ``mode=eval``, ``propagate`` or ``segment`` (its
    ``results/``); nothing is written into it. Imports no torch."""
    from dinosavi.evaluation.options import ScoreOptions
    from dinosavi.evaluation.score import score_folder
    from dinosavi.evaluation.tables import format_table, write_score_files

    if not cfg.results:
        raise ValueError("mode=score needs results=<folder of <seq>/<frame>.png palette PNGs, or a run directory>")
    split = resolve_split(cfg.data, "score")
    results = Path(cfg.results)
    if (results / "results").is_dir():  # a run directory: the one layout every mode writes
        results = results / "results"
    sequences = None if cfg.data.sequences is None else [str(name) for name in cfg.data.sequences]
    table = score_folder(results, cfg.data.root, split, year=cfg.data.year, quality=cfg.data.quality,
                         options=options(cfg.score, ScoreOptions), sequences=sequences, start=cfg.data.start,
                         stop=cfg.data.stop)
    save_config(cfg, run_dir)
    paths = write_score_files(table, run_dir, split)
    log.info("scored %s; wrote %s", results, ", ".join(str(p) for p in paths))
    print(format_table(table))
    return table.global_means()


def run_segment(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Path | None:
    """``mode=segment`` (and ``mode=propagate input=<video>``): segment the videos of ``input=`` with the slot
    model of ``resume=<checkpoint>`` (its model and encoder config) or, with ``method=propagate``, by label
    propagation of ``first_mask``; returns the path of ``report.html``."""
    from dinosavi.evaluation.segment import METHODS

    method = "propagate" if cfg.mode == "propagate" else cfg.method
    if method not in METHODS:
        raise ValueError(f"Unknown method `{method}`; expected one of {METHODS}")
    ckpt = None
    if method == "slots":
        if not cfg.resume:
            raise ValueError("mode=segment needs resume=<checkpoint.safetensors> (a slot model), or "
                             "method=propagate first_mask=<palette PNG> with any encoder=")
        ckpt, cfg = _load(cfg, overrides, EVAL_SECTIONS)
    elif cfg.resume:
        log.warning("method=%s uses no checkpoint; resume=%s is ignored", method, cfg.resume)
    save_config(cfg, run_dir)
    return _segment(cfg, method, ckpt, run_dir)


def _segment(cfg: DictConfig, method: str, ckpt: Checkpoint | None, run_dir: Path) -> Path | None:
    """Read the inputs and the first mask, build the segmenter of ``method`` and segment (``mode=segment``)."""
    from dinosavi.cli.build import build_feature_source, load_model
    from dinosavi.cli.config import PropagateConfig
    from dinosavi.data.davis import davis_palette
    from dinosavi.data.inputs import StreamOptions, find_sources, stream_frames
    from dinosavi.evaluation.options import EvalOptions
    from dinosavi.evaluation.runner import check_encoder_options
    from dinosavi.evaluation.segment import (
        first_frame,
        propagation_segmenter,
        read_first_mask,
        segment_inputs,
        slot_segmenter,
    )

    if not cfg.input:
        raise ValueError("mode=segment needs input=<video file, folder of frames or folder of videos>")
    if method == "propagate" and not cfg.first_mask:
        raise ValueError("method=propagate needs first_mask=<palette PNG of the first frame>")
    s = cfg.segment
    if s.chunk_frames < 1:
        raise ValueError(f"segment.chunk_frames must be >= 1, got {s.chunk_frames}")
    mask_path = Path(cfg.first_mask) if cfg.first_mask else None
    start = first_frame(s.start, s.first_mask_frame, mask_path)
    stream_options = StreamOptions(max_fps=s.max_fps, short_side=s.short_side, start=start, stop=s.stop,
                                   folder_fps=s.folder_fps)
    sources = find_sources(cfg.input)
    if mask_path is not None and len(sources) > 1:
        raise ValueError(f"first_mask={mask_path} is the mask of one video, but input={cfg.input} holds "
                         f"{len(sources)} videos; segment one video at a time with first_mask")
    streams = [stream_frames(source, stream_options) for source in sources]
    first, palette = (None, davis_palette()) if mask_path is None else read_first_mask(mask_path, sources[0],
                                                                                       streams[0].size)
    encoder, chunk = _encoder(cfg), s.chunk_frames
    eval_options = options(cfg.eval, EvalOptions)
    segmenter: Callable[[FrameStream], Segmenter]
    if method == "slots":
        assert ckpt is not None
        model = load_model(ckpt, cfg.model, encoder)
        lock_on = first is not None
        eval_options = replace(eval_options, lock_on=lock_on, num_slots=None if lock_on else eval_options.num_slots,
                               num_extra_slots=eval_options.num_extra_slots if lock_on else 0)
        check_encoder_options(eval_options, encoder.num_heads is not None, encoder.name)
        source = build_feature_source(cfg, encoder, "eval")
        kind = f"lock-on from {mask_path}" if lock_on else "unsupervised, every slot a segment"
        title = f"Segmentation with {cfg.preset} (step {ckpt.step}): {kind}"
        details = [f"checkpoint {cfg.resume}; encoder {encoder.name} at short side {cfg.eval.short_side}; "
                   f"{eval_options}"]

        def segmenter(stream: FrameStream) -> Segmenter:
            return slot_segmenter(model, source, chunk, first, stream.size, eval_options, cfg.seed,
                                  options(cfg.propagate, PropagateConfig))
    else:
        assert first is not None
        labels = first
        params = options(cfg.propagate, PropagateConfig)
        source = build_feature_source(cfg, encoder, "propagate")
        title = f"Label propagation ({params.preset}) of {mask_path} with {encoder.name}"
        details = [f"encoder {encoder.name}, stride {encoder.patch_size}, short side {params.short_side}; {params}"]

        def segmenter(stream: FrameStream) -> Segmenter:
            return propagation_segmenter(source, chunk, labels, params)
    details.append(f"input {cfg.input}; " + ", ".join(f"segment.{k}={v}" for k, v in s.items()))
    log.info("%s on %d video(s) from %s", title, len(sources), cfg.input)
    return segment_inputs(streams, segmenter, run_dir, palette, eval_options, title=title, details=details,
                          maps_folder="slots" if method == "slots" else "soft")


def run_convert(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Path:
    """``mode=convert``: an original DINOSAVi ``resume=<file>.ckpt`` as a safetensors checkpoint of this package
    (``out=<file>``, else ``<run dir>/<name>.safetensors``), its converted config and the original's config kept.
    """
    from dinosavi.cli.build import restore_model
    from dinosavi.original import ORIGINAL_SOURCE
    from dinosavi.training.checkpoint import save_checkpoint

    if not cfg.resume:
        raise ValueError("mode=convert needs resume=<original DINOSAVi .ckpt>")
    ckpt, merged = _load(cfg, overrides)
    if ckpt.extra.get("source") != ORIGINAL_SOURCE:
        raise ValueError(f"{cfg.resume} is already a dinosavi checkpoint; mode=convert reads original DINOSAVi "
                         f".ckpt files")
    model = restore_model(ckpt, merged.model, int(ckpt.extra["feature_dim"]))
    config = cast(dict[str, Any], OmegaConf.to_container(merged, resolve=True))
    config.update(mode="train", resume=None)
    out = Path(cfg.out) if cfg.out else run_dir / f"{Path(cfg.resume).stem}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, config, ckpt.step, extra=ckpt.extra)
    print(f"{cfg.resume} ({config['preset']}) -> {out}")
    return out


def run_export(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Path:
    """``mode=export``: the model of ``resume=`` (a checkpoint, an original ``.ckpt``, a model folder or
    ``hf://``) as a Hub-style folder at ``out=`` (else ``<run dir>/<checkpoint name>``) with a model card stating
    the numbers of ``export.results``; ``export.push=true`` uploads it to ``export.repo``. Returns the folder."""
    from dinosavi.training.hub import collect_results, push_to_hub, save_pretrained
    from dinosavi.training.loading import load_checkpoint

    if not cfg.resume:
        raise ValueError("mode=export needs resume=<checkpoint.safetensors>")
    if cfg.export.push and not cfg.export.repo:
        raise ValueError("export.push=true needs export.repo=<owner/name>, the Hub repository to upload to")
    ckpt = load_checkpoint(cfg.resume)
    measured = collect_results(list(cfg.export.results), cfg.resume)
    name = Path(str(cfg.resume).rstrip("/")).name.removesuffix(".safetensors").removesuffix(".ckpt")
    out = save_pretrained(Path(cfg.out) if cfg.out else run_dir / name, ckpt, measured, source=str(cfg.resume),
                          repo=cfg.export.repo)
    print(f"{cfg.resume} (step {ckpt.step}) -> {out}" + (f" with {len(measured)} results" if measured else ""))
    if cfg.export.push:
        url = push_to_hub(out, cfg.export.repo, cfg.export.revision, cfg.export.private)
        print(f"pushed to {url}; load it with resume=hf://{cfg.export.repo}"
              + (f"@{cfg.export.revision}" if cfg.export.revision else ""))
    return out
