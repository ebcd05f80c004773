"""Does a model trained here bind objects, and does it hold them through a video?

Both tests train a small model from scratch on synthetic videos (EfficientNet-Lite0 features, stride 16, as
``mode=demo``), save it through the package's own ``train``, and evaluate it on held-back videos:

- the drift test: a per-frame model (fresh slots every frame) on videos played forward then backward, so
  the last frames show what the first frames showed; its segmentation of the last frames must be as good
  as that of the first. The old evaluation loop (slots carried from frame to frame and refined again on
  every frame, which training never did) fails the same measure: the test can fail.
- the learning test: the demo's temporal model, trained for a bounded number of steps, must reach a video
  FG-ARI on held-back videos that neither the untrained model nor k-means on the same features reach.
- the lock-on test: on that same briefly trained model, the recipe's lock-on (slots started from the
  first-frame masks by the conditioned initialiser, k-means background regions, anchored to frame 0) must
  beat the lock-on it replaces (random slots restricted to the masks, then carried) by a margin.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.conftest import compose_config

pytestmark = pytest.mark.slow

#: 36 train + 4 val videos of 24 frames at 192x256 (EfficientNet-Lite0 stride 16: a 12x16 grid).
NUM_VIDEOS, VAL_VIDEOS = 40, 4
FEATURE_DIM = 320  # EfficientNet-Lite0's last stage


@pytest.fixture(scope="module")
def learning_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dinosavi.data.synthetic import SyntheticSpec, generate_synthetic

    root = tmp_path_factory.mktemp("learning") / "synthetic"
    return generate_synthetic(root, SyntheticSpec(num_videos=NUM_VIDEOS, val_videos=VAL_VIDEOS, seed=0))


def _overrides(root: Path, store: Path, *extra: str) -> list[str]:
    return ["hparam=demo", "encoder=efficientnet_lite0", "encoder.stride=16", "data=synthetic", f"data.root={root}",
            f"data.synthetic.num_videos={NUM_VIDEOS}", f"data.synthetic.val_videos={VAL_VIDEOS}",
            f"features.store={store}", "device=cpu", "seed=0", "train.log_every=1000", *extra]


def _train(root: Path, run_dir: Path, *extra: str) -> Path:
    from dinosavi.cli.modes import run_train
    from dinosavi.utils import seed_everything

    seed_everything(0)  # as the entry point does
    return run_train(compose_config("mode=train", *_overrides(root, run_dir.parent / "features", *extra)), run_dir, [])


def _val_features(root: Path, store: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(features (T, D, h, w), labels (T, H, W))`` of each val video, at the demo's eval resolution."""
    from dinosavi.cli.build import build_encoder, build_sequences
    from dinosavi.encoders.base import ResizeRule
    from dinosavi.features.source import FeatureSource
    from dinosavi.features.space import Resolution

    cfg = compose_config("mode=eval", *_overrides(root, store))
    encoder = build_encoder(cfg.encoder)
    source = FeatureSource(encoder, Resolution(ResizeRule(short_side=cfg.eval.short_side,
                                                          multiple_of=encoder.patch_size)))
    out = []
    for seq in build_sequences(cfg.data, "val"):
        assert seq.labels is not None
        out.append((torch.stack(list(source.features(seq.frames))), seq.labels))
    return out


def _frame_fg_ari(model, features: torch.Tensor, labels: torch.Tensor, **options) -> torch.Tensor:
    """FG-ARI of every frame of one video, every slot a segment: ``(T,)``."""
    from dinosavi.evaluation.options import EvalOptions
    from dinosavi.evaluation.vos import segment_sequence
    from dinosavi.metrics.objects import fg_ari_per_frame

    result = segment_sequence(model, features, None, EvalOptions(lock_on=False, **options),
                              size=tuple(labels.shape[-2:]), generator=torch.Generator().manual_seed(0))
    return fg_ari_per_frame(labels, result.labels)


def _load(ckpt_path: Path, trained: bool = True, **model_changes):
    """The checkpoint's model (``model_changes`` to its config); ``trained`` False: its weights at step 0."""
    from dinosavi.models.factory import build_model
    from dinosavi.models.options import ModelConfig
    from dinosavi.training.loading import load_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    torch.manual_seed(0)  # as the entry point seeds before train() builds the model
    model = build_model(ModelConfig(**{**ckpt.config["model"], **model_changes}), FEATURE_DIM)
    if trained:
        model.load_state_dict(ckpt.model, strict=True)
    return model.eval()


def _mirrored_scores(model, root: Path, store: Path, **options) -> tuple[float, float]:
    """Mean FG-ARI of frames 0-5 and of frames 18-23 of the val videos played forward then backward (frame
    23 - t shows frame t, so the last 6 frames repeat the first 6: a loop without drift scores them alike)."""
    early, late = [], []
    for features, labels in _val_features(root, store):
        features = torch.cat([features[:12], features[:12].flip(0)])
        labels = torch.cat([labels[:12], labels[:12].flip(0)])
        scores = _frame_fg_ari(model, features, labels, **options)
        early.append(scores[:6])
        late.append(scores[-6:])
    return float(torch.cat(early).nanmean()), float(torch.cat(late).nanmean())


def _train_per_frame(root: Path, run_dir: Path, steps: int, *extra: str) -> Path:
    """A per-frame model (predictor none: 3 iterations on fresh slots every frame, as in training; no conditioned
    lock-on training, which needs slots carried from frame to frame)."""
    return _train(root, run_dir, "model.predictor=none", "model.ini_iters=null", "model.num_iters=3",
                  "model.condition=none", "model.track_weight=0",
                  "data.frames_per_clip=1", f"train.max_steps={steps}", f"train.save_every={steps}", *extra)


def test_a_per_frame_model_does_not_drift(learning_set, tmp_path):
    # measured: frames 0-5 0.453, frames 18-23 0.483 after 500 steps (1 thread)
    model = _load(_train_per_frame(learning_set, tmp_path / "train", 500))
    first, last = _mirrored_scores(model, learning_set, tmp_path / "features")
    print(f"FG-ARI frames 0-5 {first:.3f}, frames 18-23 {last:.3f}")
    assert first > 0.3, f"the briefly trained model should bind (FG-ARI {first:.3f})"
    assert last >= 0.9 * first, f"the last frames ({last:.3f}) fall more than 10% below the first ({first:.3f})"


def test_the_drift_measure_catches_the_old_loop(learning_set, tmp_path):
    # The old evaluation loop carried a per-frame model's slots and ran 3 more iterations on every frame,
    # which training never did. On the recipe of the issue that found it (alpha-mask blending) the slots
    # leave what the decoder was trained on and the masks decay: measured, frames 0-5 0.113, frames 18-23
    # 0.040 (0.35x) after 300 steps. (On blend=attention models the old loop happens not to decay.)
    ckpt = _train_per_frame(learning_set, tmp_path / "train", 300, "model.blend=alpha", "model.decoder=alpha")
    old_loop = _load(ckpt, predictor="identity")  # slots carried from frame to frame
    first, last = _mirrored_scores(old_loop, learning_set, tmp_path / "features", num_iters=3, ini_iters=3)
    print(f"the old loop: FG-ARI frames 0-5 {first:.3f}, frames 18-23 {last:.3f}")
    assert last < 0.9 * first, f"the old loop should fail the drift measure ({last:.3f} vs {first:.3f})"


#: Video FG-ARI the trained model must reach on the 4 held-back videos (the same slot on the same object
#: in every frame). Measured here on 2 cores: the untrained model 0.028, k-means per frame 0.022 (it has
#: no identity across frames), the demo recipe after 300 steps 0.238 (frame FG-ARI 0.378).
VIDEO_FG_ARI_FLOOR = 0.15


@pytest.fixture(scope="module")
def demo_300(learning_set: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo recipe trained 300 steps on the learning set: its checkpoint and the feature store."""
    run_dir = tmp_path_factory.mktemp("demo-300") / "train"
    return _train(learning_set, run_dir, "train.max_steps=300", "train.save_every=300"), run_dir.parent / "features"


def test_a_trained_model_binds_objects_through_videos(learning_set, demo_300, tmp_path):
    from dinosavi.cli.build import build_encoder, build_feature_source, build_sequences
    from dinosavi.cli.modes import run_eval
    from dinosavi.evaluation.options import EvalOptions
    from dinosavi.evaluation.references import kmeans_reference
    from dinosavi.evaluation.vos import segment_sequence
    from dinosavi.metrics.objects import discovery_scores

    ckpt, store = demo_300
    overrides = [*_overrides(learning_set, store), "eval.lock_on=false", "eval.overlays=false",
                 "eval.videos=false", "eval.report=false", "data.split=val", f"resume={ckpt}"]
    cfg = compose_config("mode=eval", *overrides)
    trained = run_eval(cfg, tmp_path / "trained", overrides)  # eval.* over the checkpoint's, as on the command line
    untrained_model = _load(ckpt, trained=False)
    untrained = []
    for features, labels in _val_features(learning_set, store):
        result = segment_sequence(untrained_model, features, None, EvalOptions(lock_on=False),
                                  size=tuple(labels.shape[-2:]), generator=torch.Generator().manual_seed(0))
        untrained.append(discovery_scores(labels, result.labels)["FG-ARI"])
    source = build_feature_source(cfg, build_encoder(cfg.encoder), "eval")
    kmeans = kmeans_reference(build_sequences(cfg.data, "val"), source, 6).global_means()
    untrained_score = sum(untrained) / len(untrained)
    print(f"video FG-ARI: trained {trained['FG-ARI']:.3f}, untrained {untrained_score:.3f}, "
          f"k-means {kmeans['FG-ARI']:.3f}; frame FG-ARI trained {trained['FG-ARI-frame']:.3f}, "
          f"k-means {kmeans['FG-ARI-frame']:.3f}")
    assert not math.isnan(trained["FG-ARI"])
    assert untrained_score < VIDEO_FG_ARI_FLOOR and kmeans["FG-ARI"] < VIDEO_FG_ARI_FLOOR
    assert trained["FG-ARI"] > VIDEO_FG_ARI_FLOOR


#: J&F margin of the recipe's lock-on over the lock-on it replaces, on the same model trained 300 steps and
#: the 4 held-back videos. Measured here (1 thread): recipe 0.172, random slots carried 0.138.
LOCK_ON_MARGIN = 0.015


def test_conditioned_lock_on_beats_random_lock_on_of_the_same_model(learning_set, demo_300):
    from dinosavi.evaluation.options import EvalOptions
    from dinosavi.evaluation.vos import segment_sequence
    from dinosavi.metrics.davis import evaluate_semisupervised

    ckpt, store = demo_300
    model = _load(ckpt)
    assert model.conditioner is not None

    def jf(options: EvalOptions) -> float:
        scores = []
        for features, labels in _val_features(learning_set, store):
            result = segment_sequence(model, features, labels[0], options, generator=torch.Generator().manual_seed(0))
            s = evaluate_semisupervised(labels, result.labels)
            scores += [(s.j.mean(1) + s.f.mean(1)) / 2]
        return torch.cat(scores).mean().item()

    recipe = jf(EvalOptions(lock_init="mask", bg_regions="kmeans", anchor=1.0))
    before = jf(EvalOptions(lock_init="random", bg_regions="shared", anchor=0.0))
    print(f"lock-on J&F: recipe {recipe:.3f}, random slots carried {before:.3f}")
    assert recipe > before + LOCK_ON_MARGIN, (recipe, before)
