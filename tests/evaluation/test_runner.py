"""The evaluation runner: a built model on built features, scored and written; the checks of its options."""

from __future__ import annotations

import json

import pytest
import torch

from dinosavi.data.davis import DavisDataset
from dinosavi.encoders.registry import create_encoder
from dinosavi.evaluation.options import EvalOptions
from dinosavi.evaluation.runner import check_encoder_options, evaluate_slots, run_sequences
from dinosavi.features.source import FeatureSource
from dinosavi.features.space import resolution
from dinosavi.features.store import FeatureStore
from tests.evaluation.test_vos import binding_model

QUIET = {"overlays": False, "videos": False, "report": False}


@pytest.fixture(scope="module")
def parts(tiny_synthetic):
    encoder = create_encoder("efficientnet_lite0", stride=8).freeze()
    return binding_model(encoder.feature_dim).eval(), encoder, DavisDataset(tiny_synthetic, "val")


def test_options_that_read_cls_attention_need_a_cls_token():
    check_encoder_options(EvalOptions(background_mask="every_frame"), True, "vit")
    with pytest.raises(ValueError, match=r"every_frame .* encoder `cnn` has no CLS token"):
        check_encoder_options(EvalOptions(background_mask="every_frame"), False, "cnn")
    with pytest.raises(ValueError, match="num_extra_slots needs the CLS-attention background"):
        check_encoder_options(EvalOptions(num_extra_slots=2), False, "cnn")
    check_encoder_options(EvalOptions(lock_on=False, num_extra_slots=2), False, "cnn")  # unused without lock-on


def test_a_built_model_is_evaluated_from_the_store_as_from_the_encoder(parts, tmp_path):
    model, encoder, dataset = parts
    res = resolution("eval", (64, 80), 64, encoder.patch_size)
    options = EvalOptions(num_bg_slots=2, **QUIET)
    online = evaluate_slots(model, FeatureSource(encoder, res), dataset, options, tmp_path / "online", split="val")
    stored = FeatureSource.create(encoder, res, store=FeatureStore(tmp_path / "store", "fp32"))
    first = evaluate_slots(model, stored, dataset, options, tmp_path / "a", split="val")
    second = evaluate_slots(model, stored, dataset, options, tmp_path / "b", split="val")
    assert online == first == second  # fp32 store: the same features, the same masks
    assert 0.0 <= online["J&F-Mean"] <= 1.0
    written = json.loads((tmp_path / "online" / "metrics-val.json").read_text())["global"]
    assert written == pytest.approx(online)
    assert sorted(p.name for p in (tmp_path / "online" / "results").iterdir()) == dataset.sequence_names


def test_unsupervised_scores_discovery_and_refuses_too_many_segments(parts, tmp_path):
    model, encoder, dataset = parts
    source = FeatureSource(encoder, resolution("eval", (64, 80), 64, encoder.patch_size))
    scores = evaluate_slots(model, source, dataset, EvalOptions(lock_on=False, **QUIET), tmp_path / "u", split="val")
    assert {"FG-ARI", "mBO", "mIoU", "J&F-Mean"} <= set(scores)
    assert (tmp_path / "u" / "discovery-val.csv").is_file()
    with pytest.raises(ValueError, match=r"4 slots exceed .*max_proposals=3"):
        evaluate_slots(model, source, dataset, EvalOptions(lock_on=False), tmp_path / "x", split="val",
                       max_proposals=3)


def test_a_failing_sequence_leaves_no_partial_results(parts, tmp_path):
    _, _, dataset = parts

    def predict_ids(seq):
        raise ValueError(f"cannot segment {seq.name}")

    with pytest.raises(ValueError, match="cannot segment synth-0003"):
        run_sequences(dataset, predict_ids, tmp_path / "out", "val", "t", EvalOptions(), "d")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_predictions_of_the_wrong_size_are_refused(parts, tmp_path):
    _, _, dataset = parts

    def predict_ids(seq):
        return torch.zeros(len(seq.frames), 8, 8, dtype=torch.long), None

    with pytest.raises(ValueError):
        run_sequences(dataset, predict_ids, tmp_path / "out", "val", "t", EvalOptions(**QUIET), "d")
