"""The typed options of evaluation check their values when they are made."""

from __future__ import annotations

import pytest

from dinosavi.evaluation.options import EvalOptions, PropagationParams, ScoreOptions, slot_count


def test_slot_counts():
    assert slot_count(5) == 5 and slot_count([2, 3]) == [2, 3] and slot_count((1, 1)) == [1, 1]
    for bad in (0, -1, True, [1, 0], [1, 2, 3], "4"):
        with pytest.raises(ValueError, match=r"eval.num_slots must be"):
            slot_count(bad)


@pytest.mark.parametrize(("key", "value"), [("output", "mask"), ("background_mask", "always"),
                                            ("label_sampling", "bilinear"), ("track_mode", "hungarian")])
def test_unknown_choices_are_named(key, value):
    with pytest.raises(ValueError, match=rf"Unknown eval\.{key} `{value}`"):
        EvalOptions(**{key: value})


def test_eval_options():
    assert EvalOptions(lock_on=False, num_slots=[2, 4]).num_slots == [2, 4]
    assert EvalOptions(background_mask="every_frame").every_frame_background
    assert not EvalOptions().every_frame_background
    with pytest.raises(ValueError, match="num_slots applies to lock_on=false"):
        EvalOptions(num_slots=6)


def test_score_and_propagation_options():
    with pytest.raises(ValueError, match=r"Unknown score\.task `weakly` \(the DAVIS task\)"):
        ScoreOptions(task="weakly")
    with pytest.raises(ValueError, match=r"score.workers must be >= 0"):
        ScoreOptions(workers=-2)
    assert PropagationParams().topk == 5 and PropagationParams().n_last_frames == 7  # DINO's
    for bad in ({"topk": 0}, {"temperature": 0.0}, {"n_last_frames": -1}, {"chunk_elements": 0}):
        with pytest.raises(ValueError):
            PropagationParams(**bad)


def test_lock_on_aids_are_checked_by_key():
    with pytest.raises(ValueError, match=r"eval\.lock_init"):
        EvalOptions(lock_init="boxes")
    with pytest.raises(ValueError, match=r"eval\.bg_regions"):
        EvalOptions(bg_regions="grid")
    for bad in (dict(locality=-1), dict(anchor=1.5), dict(fuse=-0.1)):
        with pytest.raises(ValueError, match=r"eval\.locality must be >= 0 and eval\.anchor, eval\.fuse in"):
            EvalOptions(**bad)
    assert EvalOptions(lock_init="assign", num_slots=10).num_slots == 10  # free slots, then assigned
    with pytest.raises(ValueError, match=r"eval\.num_slots applies to lock_on=false and lock_init=assign"):
        EvalOptions(num_slots=10)
