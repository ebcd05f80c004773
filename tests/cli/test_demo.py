from dinosavi.cli.build import build_resolution
from dinosavi.cli.demo import demo_sets, demo_summary, natural_config
from dinosavi.encoders.registry import create_encoder
from tests.conftest import compose_config


def _results(frame: float, video: float, lock: float, fused: float = 0.25) -> dict[str, dict[str, float]]:
    unsup = {"FG-ARI-frame": frame, "FG-ARI": video, "mBO-frame": 0.244, "mBO": 0.204, "FG-ARI-early": 0.5,
             "FG-ARI-late": 0.35}
    return {"synthetic unsupervised": unsup, "synthetic k-means": {"FG-ARI-frame": 0.633, "mBO-frame": 0.226},
            "synthetic lock-on": {"J&F-Mean": lock}, "synthetic fused": {"J&F-Mean": fused},
            "synthetic propagation": {"J&F-Mean": 0.261},
            "davis lock-on": {"J&F-Mean": 0.074}, "davis fused": {"J&F-Mean": 0.4},
            "davis propagation": {"J&F-Mean": 0.363}}


def test_demo_summary_marks_each_target_met_or_missed():
    lines = demo_summary(_results(0.587, 0.428, 0.133), 6, 0.7).splitlines()
    row = {line.split("  ")[1].strip() if line.startswith("  ") else line.split("   ")[0]: line for line in lines}
    assert "k-means (K=6) 0.633" in row["frame FG-ARI"] and row["frame FG-ARI"].endswith("[missed]")
    assert row["video FG-ARI"].endswith("[missed]")
    assert "0.70 x the first quarter" in row["FG-ARI, second half of frames"]
    assert row["FG-ARI, second half of frames"].endswith("[missed]")  # 0.35 < 0.8 x 0.5
    alone = [line for line in lines if "slots alone" in line]
    fused = [line for line in lines if "slots fused with propagation (0.7)" in line]
    assert len(alone) == len(fused) == 2  # synthetic, then DAVIS
    assert "label propagation 0.261" in alone[0] and alone[0].endswith("[missed]")
    assert fused[0].endswith("[missed]") and fused[1].endswith("[met]")  # 0.25 < 0.261; 0.4 >= 0.363
    met = demo_summary(_results(0.7, 0.55, 0.3, 0.3), 6, 0.7)
    assert met.count("[met]") == 5 and met.count("[missed]") == 3  # mBO, late/early and DAVIS alone stay missed


def test_demo_summary_of_a_model_that_binds_nothing_in_the_first_frames():
    results = _results(0.1, 0.0, 0.1)
    results["synthetic unsupervised"].update({"FG-ARI-early": 0.0, "FG-ARI-late": 0.0})
    row = next(line for line in demo_summary(results, 6, 0.7).splitlines() if "second half" in line)
    assert "the first quarter scores 0" in row and row.endswith("[met]")  # 0 >= 0.8 x 0: no division by zero


def test_natural_model_is_the_recipe_on_natural_frames_evaluated_at_the_davis_resolution():
    cfg = compose_config("mode=demo")
    natural = natural_config(cfg)
    assert (natural.data.name, natural.data.root, natural.data.split) == ("davis", cfg.demo.natural_root, "train")
    assert natural.train.max_steps == cfg.demo.natural_steps
    assert list(natural.train.input_size) == list(cfg.demo.natural_input_size)
    assert natural.eval.short_side == cfg.demo.davis_short_side  # what mode=eval of its checkpoint uses
    assert natural.model == cfg.model and natural.eval.anchor == cfg.eval.anchor == 1.0  # the same recipe
    assert cfg.data.name == "synthetic"  # the synthetic model's config is left as it was


def test_demo_sets_are_read_at_the_eval_resolutions_of_their_models(tiny_synthetic):
    cfg = compose_config("mode=demo", f"data.root={tiny_synthetic}", f"demo.davis_root={tiny_synthetic}",
                         "eval.short_side=64", "demo.davis_short_side=48")
    encoder = create_encoder("vit_tiny_random").freeze()
    synthetic, davis = demo_sets(cfg, encoder, None)
    assert synthetic.source.resolution == build_resolution(cfg, encoder, "eval")
    assert davis.source.resolution == build_resolution(natural_config(cfg), encoder, "eval")
    assert (synthetic.source.rule.short_side, davis.source.rule.short_side) == (64, 48)
