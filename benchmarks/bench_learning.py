"""Learning curve of a preset trained from scratch on the synthetic set, against references that need no learning.

Trains ``--preset`` for ``--steps`` (or ``--minutes`` of wall clock, converted to steps after timing a few)
through the package's own ``train``, saving a checkpoint every ``--eval-every`` steps, and evaluates every
checkpoint on the synthetic val split through the package's own ``mode=eval`` path (features read from a
feature store, so val frames are encoded once):

- unsupervised (every slot a segment): frame and video FG-ARI, FG-ARI on the first quarter and the second
  half of the frames (drift), mBO, mIoU, and FG-ARI per frame index;
- lock-on (first-frame masks): J&F.

On the same val frames it computes the references: k-means (K = the model's slot count) on the
layer-normalised features of the same encoder at the same resolution (frame FG-ARI, mBO), and label
propagation J&F with the same encoder. A slot model that does not beat k-means has not learned to bind.

``--record`` writes the table into ``benchmarks/RESULTS.md`` (between markers, replacing an earlier run of
the same preset) and ``benchmarks/learning-<preset>.png`` (metrics vs. step, FG-ARI vs. frame index).

``--lock-on`` runs the lock-on ablation instead (:mod:`benchmarks.lock_on`): ``mode=demo``'s two models trained
on each of ``--seeds``, every lock-on method on the synthetic val videos and on the DAVIS sample, with label
propagation and k-means in the same run, as mean ± std.

    python benchmarks/bench_learning.py --preset demo --steps 2000 --eval-every 250 --record
    python benchmarks/bench_learning.py --lock-on --seeds 0 1 2 --baseline --record
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dinosavi.cli.build import (  # noqa: E402
    build_encoder,
    build_feature_source,
    build_sequences,
    ensure_dataset,
    load_model,
    resolve_device,
)
from dinosavi.cli.config import checkpoint_config, register_configs  # noqa: E402
from dinosavi.cli.demo import EvalSet, kmeans_table, propagation_scores  # noqa: E402
from dinosavi.cli.modes import evaluate_model, options, run_train  # noqa: E402
from dinosavi.encoders.base import FrozenEncoder  # noqa: E402
from dinosavi.evaluation.options import EvalOptions  # noqa: E402
from dinosavi.training.loading import load_checkpoint  # noqa: E402
from dinosavi.utils import seed_everything  # noqa: E402

COLUMNS = ("step", "minutes", "loss", "FG-ARI-frame", "FG-ARI", "FG-ARI-early", "FG-ARI-late", "mBO-frame", "mBO",
           "mIoU", "lock-on J&F")


@dataclass
class Curve:
    """The measurements of one run."""

    preset: str
    rows: list[dict[str, float]] = field(default_factory=list)
    frame_curves: dict[int, list[float]] = field(default_factory=dict)
    references: dict[str, float] = field(default_factory=dict)
    kmeans_curve: list[float] = field(default_factory=list)
    wall_minutes: float = 0.0
    steps_per_second: float = 0.0
    setup: str = ""


def compose_config(overrides: list[str]) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "dinosavi" / "conf"), version_base="1.3"):
        return compose("main", overrides=overrides)


def references(cfg: DictConfig, encoder: FrozenEncoder, out: Path) -> tuple[dict[str, float], list[float]]:
    """k-means and label-propagation references on the val split, at the eval resolution of ``cfg`` (as
    ``mode=demo`` computes them, the features read from the store)."""
    evaluation = EvalSet("synthetic", "synthetic", build_sequences(cfg.data, "val"),
                         build_feature_source(cfg, encoder, "eval"))
    found = kmeans_table(cfg, evaluation)
    means = found.global_means()
    quiet = replace(options(cfg.eval, EvalOptions), overlays=False, videos=False, report=False)
    propagation = propagation_scores(cfg, evaluation, out / "propagate", quiet)
    return {"k-means FG-ARI-frame": means["FG-ARI-frame"], "k-means FG-ARI": means["FG-ARI"],
            "k-means mBO-frame": means["mBO-frame"], "propagation J&F": propagation["J&F-Mean"]}, found.frame_curve()


def evaluate(base: list[str], encoder: FrozenEncoder, ckpt_path: Path,
             out: Path) -> tuple[dict[str, float], list[float]]:
    """Unsupervised and lock-on evaluation of one checkpoint through the package's eval path (what ``mode=eval``
    runs), the checkpoint read once and its model built once."""
    quiet = ["mode=eval", *base, "data.split=val", "eval.overlays=false", "eval.videos=false", "eval.report=false"]
    ckpt = load_checkpoint(ckpt_path)
    sections = ["preset", "model", "encoder"]
    unsup_cfg = checkpoint_config(compose_config([*quiet, "eval.lock_on=false"]), ckpt.config, sections, [])
    model = load_model(ckpt, unsup_cfg.model, encoder)
    name = f"{ckpt.config['preset']} (step {ckpt.step})"
    scores = evaluate_model(unsup_cfg, model, encoder, out / "unsupervised", name)
    curve = json.loads((out / "unsupervised" / "discovery-val.json").read_text())["FG-ARI per frame index"]
    lock_cfg = checkpoint_config(compose_config([*quiet, "eval.lock_on=true"]), ckpt.config, sections, [])
    lock = evaluate_model(lock_cfg, model, encoder, out / "lock-on", name)
    return {**{k: scores[k] for k in COLUMNS[3:-1]}, "lock-on J&F": lock["J&F-Mean"]}, curve


def loss_at(run_dir: Path, step: int) -> float:
    """The training loss logged at ``step`` (TensorBoard), NaN when absent."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    events = [e for e in acc.Scalars("loss/total") if e.step <= step] if "loss/total" in acc.Tags()["scalars"] else []
    return events[-1].value if events else float("nan")


def run(args: argparse.Namespace) -> Curve:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = [f"hparam={args.preset}", f"encoder={args.encoder}", f"encoder.stride={args.stride}", "data=synthetic",
            f"data.root={args.data_root}",
            f"data.synthetic.num_videos={args.videos}", f"data.synthetic.val_videos={args.val_videos}",
            f"features.store={out / 'features'}", f"device={args.device}", f"seed={args.seed}", *args.override]
    cfg = compose_config(["mode=train", *base])
    seed_everything(cfg.seed)
    ensure_dataset(cfg.data)
    curve = Curve(args.preset, setup=f"`{' '.join(base[:3] + list(args.override))}`, {args.videos - args.val_videos} "
                                     f"train / {args.val_videos} val videos")
    t0 = time.perf_counter()
    eval_cfg = compose_config(["mode=eval", *base])
    encoder = build_encoder(eval_cfg.encoder).to(resolve_device(eval_cfg.device))  # one encoder for every evaluation
    curve.references, curve.kmeans_curve = references(eval_cfg, encoder, out)
    print(f"references: {curve.references} ({time.perf_counter() - t0:.0f} s)", flush=True)

    steps = args.steps
    if args.minutes is not None:  # time a short run of the same recipe, then size the real one
        probe_dir = out / "probe"
        probe = compose_config(["mode=train", *base, "train.max_steps=12", "train.save_every=1000"])
        t1 = time.perf_counter()
        run_train(probe, probe_dir, [])
        per_step = (time.perf_counter() - t1) / 12
        steps = max(args.eval_every, int(args.minutes * 60 / per_step) // args.eval_every * args.eval_every)
        print(f"{per_step:.3f} s/step (with start-up) -> {steps} steps in {args.minutes} min", flush=True)
    train_cfg = compose_config(["mode=train", *base, f"train.max_steps={steps}", f"train.save_every={args.eval_every}",
                                f"train.log_every={min(args.eval_every, 25)}"])
    run_dir = out / "train"
    t1 = time.perf_counter()
    run_train(train_cfg, run_dir, [])
    train_seconds = time.perf_counter() - t1
    curve.steps_per_second = steps / train_seconds
    for step in range(args.eval_every, steps + 1, args.eval_every):
        ckpt = run_dir / "checkpoints" / f"step-{step:07d}.safetensors"
        scores, frame_curve = evaluate(base, encoder, ckpt, out / f"eval-{step:07d}")
        row = {"step": step, "minutes": step / curve.steps_per_second / 60, "loss": loss_at(run_dir, step), **scores}
        curve.rows.append(row)
        curve.frame_curves[step] = frame_curve
        print(" ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    curve.wall_minutes = (time.perf_counter() - t0) / 60
    return curve


def table(curve: Curve) -> str:
    ref = curve.references
    lines = [
        f"Setup: {curve.setup}. Training {curve.steps_per_second:.2f} steps/s; the whole run (references, training, "
        f"{len(curve.rows)} evaluations) took {curve.wall_minutes:.1f} min.",
        "",
        f"References on the same val frames (no learning): k-means frame FG-ARI **{ref['k-means FG-ARI-frame']:.3f}**, "
        f"video FG-ARI {ref['k-means FG-ARI']:.3f} (per-frame clusters: no identity across frames), frame mBO "
        f"{ref['k-means mBO-frame']:.3f}; label propagation J&F **{ref['propagation J&F']:.3f}**.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in curve.rows:
        cells = [str(int(row["step"]))] + [f"{row[c]:.3f}" if c != "minutes" else f"{row[c]:.1f}" for c in COLUMNS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    last = curve.frame_curves[max(curve.frame_curves)]
    picks = sorted({0, len(last) // 4, len(last) // 2, 3 * len(last) // 4, len(last) - 1})
    lines += ["", f"FG-ARI per frame index at step {max(curve.frame_curves)}: "
              + ", ".join(f"frame {t}: {last[t]:.3f}" for t in picks)
              + "; k-means: " + ", ".join(f"frame {t}: {curve.kmeans_curve[t]:.3f}" for t in picks) + "."]
    return "\n".join(lines)


def plot(curve: Curve, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in curve.rows]
    for key, style in (("FG-ARI-frame", "-o"), ("FG-ARI", "-s"), ("mBO-frame", "-^"), ("lock-on J&F", "-d")):
        a.plot(steps, [r[key] for r in curve.rows], style, label=key)
    a.axhline(curve.references["k-means FG-ARI-frame"], color="grey", ls="--", label="k-means FG-ARI-frame")
    a.axhline(curve.references["propagation J&F"], color="black", ls=":", label="propagation J&F")
    a.set_xlabel("training step")
    a.set_ylim(0, 1)
    a.set_title(f"{curve.preset}: held-back synthetic videos")
    a.legend(fontsize=7)
    for step, values in curve.frame_curves.items():
        b.plot(range(len(values)), values, label=f"step {step}")
    b.plot(range(len(curve.kmeans_curve)), curve.kmeans_curve, "k--", label="k-means")
    b.set_xlabel("frame index")
    b.set_ylabel("FG-ARI")
    b.set_ylim(0, 1)
    b.set_title("drift: FG-ARI per frame")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def record(curve: Curve, results: Path) -> None:
    """Replace this preset's section of RESULTS.md (or append it)."""
    begin, end = f"<!-- bench_learning:{curve.preset}:begin -->", f"<!-- bench_learning:{curve.preset}:end -->"
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
               f"{torch.__version__}, {time.strftime('%Y-%m-%d')}")
    body = (f"{begin}\n### `{curve.preset}` ({machine})\n\n{table(curve)}\n\n"
            f"![learning curve of {curve.preset}](learning-{curve.preset}.png)\n{end}")
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: body, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    results.write_text(text)


def run_lock_on(args: argparse.Namespace) -> None:
    """``--lock-on``: the ablation of :mod:`benchmarks.lock_on` on every seed, summarised (and recorded)."""
    from benchmarks.lock_on import run_seed, summary

    out = Path(args.out).resolve() / "lock-on"
    results = []
    for index, seed in enumerate(args.seeds):
        if args.summarize:  # the runs are there (e.g. seeds run in parallel processes): read them
            results.append(json.loads((out / f"seed-{seed}" / "lock-on.json").read_text()))
            continue
        cfg = compose_config(["mode=demo", f"seed={seed}", f"data.root={args.data_root}", f"device={args.device}",
                              *args.override])
        results.append(run_seed(cfg, out / f"seed-{seed}", baseline=args.baseline and index == 0))
    setup = (f"`mode=demo`'s recipe (`hparam=demo`{' ' + ' '.join(args.override) if args.override else ''}), "
             f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, torch "
             f"{torch.__version__}, {time.strftime('%Y-%m-%d')}")
    text = summary(results, setup)
    print(text)
    (out / "summary.md").write_text(text + "\n")
    if args.record:
        begin, end = "<!-- bench_learning:lock-on:begin -->", "<!-- bench_learning:lock-on:end -->"
        body = f"{begin}\n{text}\n{end}"
        path = ROOT / "benchmarks" / "RESULTS.md"
        old = path.read_text()
        path.write_text(re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: body, old, flags=re.S)
                        if begin in old else old.rstrip() + "\n\n" + body + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="demo")
    p.add_argument("--encoder", default="efficientnet_lite0")
    p.add_argument("--stride", type=int, default=16, help="CNN encoder stride (mode=demo: 16)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget instead of --steps")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--videos", type=int, default=108, help="synthetic videos in all")
    p.add_argument("--val-videos", type=int, default=8)
    p.add_argument("--data-root", default=str(ROOT / "data" / "synthetic-demo"), help="mode=demo's set by default")
    p.add_argument("--out", default=str(ROOT / "outputs" / "bench_learning"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", action="store_true", help="write RESULTS.md and the PNG")
    p.add_argument("--from-json", default=None, help="record an earlier run's learning-<preset>.json, run nothing")
    p.add_argument("--lock-on", action="store_true", help="the lock-on ablation of mode=demo's recipe instead")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="--lock-on: one run per seed")
    p.add_argument("--baseline", action="store_true", help="--lock-on: also train the recipe without its lock-on "
                                                             "training (first seed)")
    p.add_argument("--summarize", action="store_true", help="--lock-on: summarise the seeds' saved runs, run nothing")
    p.add_argument("override", nargs="*", help="extra Hydra overrides, e.g. model.num_slots=8")
    args = p.parse_args()
    if args.lock_on:
        run_lock_on(args)
        return
    if args.minutes is None and args.steps % args.eval_every:
        p.error("--steps must be a multiple of --eval-every")
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        saved["frame_curves"] = {int(k): v for k, v in saved["frame_curves"].items()}
        curve, out = Curve(**saved), Path(args.from_json)
    else:
        curve = run(args)
        out = Path(args.out) / f"learning-{args.preset}.json"
        out.write_text(json.dumps(curve.__dict__, indent=2, default=str))
    print(table(curve))
    if args.record:
        plot(curve, ROOT / "benchmarks" / f"learning-{args.preset}.png")
        record(curve, ROOT / "benchmarks" / "RESULTS.md")
    print(f"wall time {curve.wall_minutes:.1f} min; curve in {out}")


if __name__ == "__main__":
    main()
