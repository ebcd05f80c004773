from dinosavi.demo import demo_summary


def _results(frame: float, video: float, lock: float) -> dict[str, dict[str, float]]:
    unsup = {"FG-ARI-frame": frame, "FG-ARI": video, "mBO-frame": 0.244, "mBO": 0.204, "FG-ARI-early": 0.5,
             "FG-ARI-late": 0.35}
    return {"synthetic unsupervised": unsup, "synthetic k-means": {"FG-ARI-frame": 0.633, "mBO-frame": 0.226},
            "synthetic lock-on": {"J&F-Mean": lock}, "synthetic propagation": {"J&F-Mean": 0.261},
            "davis lock-on": {"J&F-Mean": 0.074}, "davis propagation": {"J&F-Mean": 0.363}}


def test_demo_summary_marks_each_target_met_or_missed():
    lines = demo_summary(_results(0.587, 0.428, 0.133), 6).splitlines()
    row = {line.split("  ")[1].strip() if line.startswith("  ") else line.split("   ")[0]: line for line in lines}
    assert "k-means (K=6) 0.633" in row["frame FG-ARI"] and row["frame FG-ARI"].endswith("[missed]")
    assert row["video FG-ARI"].endswith("[missed]")
    assert "0.70 x the first quarter" in row["FG-ARI, second half of frames"]
    assert row["FG-ARI, second half of frames"].endswith("[missed]")  # 0.35 < 0.8 x 0.5
    assert "label propagation 0.261" in row["synthetic val, lock-on J&F"]
    met = demo_summary(_results(0.7, 0.55, 0.3), 6)
    assert met.count("[met]") == 3 and met.count("[missed]") == 3  # mBO, late/early and DAVIS stay missed
