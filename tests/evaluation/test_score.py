"""mode=score: a DAVIS-format results folder scored against annotations, validation, no CSV reuse."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from dinosavi.cli.modes import run_score
from dinosavi.data.davis import read_palette_png, write_palette_png
from dinosavi.evaluation.options import ScoreOptions
from dinosavi.evaluation.score import score_folder
from tests.conftest import REPO_ROOT, compose_config

sys.path.insert(0, str(REPO_ROOT))
davis_numpy = pytest.importorskip("benchmarks.baselines.davis_numpy")

SEQUENCES = ("blackswan", "car-shadow")
FRAMES = 8


@pytest.fixture()
def sample(davis_root: Path, tmp_path: Path) -> Path:
    """The first frames of two sample sequences as a DAVIS root of their own."""
    root = tmp_path / "davis"
    for seq in SEQUENCES:
        out = root / "Annotations" / "480p" / seq
        out.mkdir(parents=True)
        for path in sorted((davis_root / "Annotations" / "480p" / seq).glob("*.png"))[:FRAMES]:
            shutil.copy(path, out)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(SEQUENCES) + "\n")
    return root


def _copy_annotations(root: Path, dest: Path) -> Path:
    shutil.copytree(root / "Annotations" / "480p", dest)
    return dest


def _perturb(labels: np.ndarray, t: int) -> np.ndarray:
    """Eroded, shifted or emptied versions of a (H, W) mask, depending on the frame."""
    mask = labels == 1
    if t % 4 == 1:
        mask = ndimage.binary_erosion(mask, iterations=3)
    elif t % 4 == 2:
        mask = np.roll(mask, (4, -7), axis=(0, 1))
    elif t % 4 == 3:
        mask = mask.copy()
        mask[:, : mask.shape[1] // 2] = False  # partly emptied
    return mask.astype(np.uint8)


def test_own_annotations_score_one(sample: Path, tmp_path: Path) -> None:
    results = _copy_annotations(sample, tmp_path / "results")
    g = score_folder(results, sample, "val").global_means()
    assert g["J&F-Mean"] == 1.0 and g["J-Mean"] == 1.0 and g["F-Mean"] == 1.0


def test_perturbed_results_equal_the_definitions(sample: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    expected = {}
    for seq in SEQUENCES:
        (results / seq).mkdir(parents=True)
        paths = sorted((sample / "Annotations" / "480p" / seq).glob("*.png"))
        gt = np.stack([read_palette_png(p)[0] for p in paths])
        pred = np.stack([_perturb(gt[t], t) for t in range(len(gt))])
        pred[len(gt) // 2] = 0  # one frame emptied entirely
        for p, labels in zip(paths, pred):
            write_palette_png(results / seq / p.name, labels)
        j, f = davis_numpy.evaluate_semisupervised(gt, pred)
        expected[f"{seq}_1"] = davis_numpy.db_statistics(j[0]) + davis_numpy.db_statistics(f[0])
    cfg = compose_config("mode=score", f"results={results}", f"data.root={sample}", "data.split=val")
    run_score(cfg, tmp_path / "run", [])
    data = json.loads((tmp_path / "run" / "metrics-val.json").read_text())
    keys = ("J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
    for name, values in expected.items():
        got = [data["per_object"][name][k] for k in keys]
        np.testing.assert_allclose(got, values, rtol=0, atol=1e-6)
    assert data["global"]["J-Mean"] < 0.9  # the perturbations are visible


def test_scores_go_into_the_run_directory_and_the_results_are_only_read(sample: Path, tmp_path: Path) -> None:
    results = _copy_annotations(sample, tmp_path / "results")
    stale = "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n0.123,0.123,0.123,0.123,0.123,0.123,0.123\n"
    (results / "global_results-val.csv").write_text(stale)  # another tool's, never reused nor replaced
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    cfg = compose_config("mode=score", f"results={results}", f"data.root={sample}", "data.split=val")
    run_score(cfg, tmp_path / "run", [])
    assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == before
    assert (tmp_path / "run" / "global_results-val.csv").read_text().splitlines()[1].startswith("1.000,1.000")
    assert "_1," in (tmp_path / "run" / "per-sequence_results-val.csv").read_text()


def test_a_run_directory_is_scored_through_its_results_folder(sample: Path, tmp_path: Path) -> None:
    """``results=<run dir>`` of mode=eval, propagate or segment: the one layout, ``<run>/results/<seq>/``."""
    _copy_annotations(sample, tmp_path / "eval-run" / "results")
    cfg = compose_config("mode=score", f"results={tmp_path / 'eval-run'}", f"data.root={sample}", "data.split=val")
    assert run_score(cfg, tmp_path / "run", [])["J&F-Mean"] == pytest.approx(1.0)


def _first_result(results: Path) -> tuple[Path, Path]:
    frames = sorted((results / SEQUENCES[1]).glob("*.png"))
    return frames[0], frames[3]


def test_missing_frame_names_file(sample: Path, tmp_path: Path) -> None:
    results = _copy_annotations(sample, tmp_path / "results")
    _, frame = _first_result(results)
    frame.unlink()
    with pytest.raises(FileNotFoundError, match=frame.name):
        score_folder(results, sample, "val")


def test_wrong_size_names_file(sample: Path, tmp_path: Path) -> None:
    results = _copy_annotations(sample, tmp_path / "results")
    _, frame = _first_result(results)
    write_palette_png(frame, np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match=f"{frame.name}.*expected 854x480"):
        score_folder(results, sample, "val")


def test_non_palette_png_names_file(sample: Path, tmp_path: Path) -> None:
    results = _copy_annotations(sample, tmp_path / "results")
    _, frame = _first_result(results)
    Image.fromarray(read_palette_png(frame)[0]).save(frame)  # mode L
    with pytest.raises(ValueError, match=f"{frame.name}.*palette"):
        score_folder(results, sample, "val")


def test_unknown_id_names_file(sample: Path, tmp_path: Path) -> None:
    results = _copy_annotations(sample, tmp_path / "results")
    _, frame = _first_result(results)
    labels, palette = read_palette_png(frame)
    labels = labels.copy()
    labels[5:9, 5:9] = 2  # only object 1 is annotated in the first frame
    write_palette_png(frame, labels, palette)
    with pytest.raises(ValueError, match=f"{frame.name} holds id 2"):
        score_folder(results, sample, "val")


def test_cli_fails_naming_the_file(sample: Path, tmp_path: Path) -> None:
    results = _copy_annotations(sample, tmp_path / "results")
    base = [
        sys.executable,
        "-m",
        "dinosavi",
        "mode=score",
        f"results={results}",
        f"data.root={sample}",
        "data.split=val",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    _, frame = _first_result(results)
    frame.unlink()
    bad = subprocess.run(base, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert str(frame) in bad.stderr + bad.stdout


def test_unsupervised_matches_permuted_proposals(tmp_path: Path) -> None:
    root, results = tmp_path / "davis", tmp_path / "results"
    gt = np.zeros((4, 24, 32), np.uint8)
    gt[:, 2:10, 3:12] = 1
    gt[:, 12:20, 14:28] = 2
    (root / "Annotations" / "480p" / "toy").mkdir(parents=True)
    (results / "toy").mkdir(parents=True)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("toy\n")
    prop = np.zeros_like(gt)
    prop[gt == 1] = 7
    prop[gt == 2] = 3
    prop[:, 0, 0] = 9  # a spurious proposal
    prop[2, 12:20, 14:21] = 0  # half of object 2 lost in frame 2
    for t in range(4):
        write_palette_png(root / "Annotations" / "480p" / "toy" / f"{t:05d}.png", gt[t])
        write_palette_png(results / "toy" / f"{t:05d}.png", prop[t])
    table = score_folder(results, root, "val", options=ScoreOptions(task="unsupervised"))
    j_ref, f_ref, ids = davis_numpy.evaluate_unsupervised(gt, prop)
    assert ids.tolist() == [7, 3]
    obj1, obj2 = table.objects
    assert (obj1.j_mean, obj1.f_mean) == (1.0, 1.0)
    assert obj2.j_mean == pytest.approx(j_ref[1].mean(), abs=1e-12) and obj2.j_mean < 1
    assert obj2.f_mean == pytest.approx(f_ref[1].mean(), abs=1e-12)
    with pytest.raises(ValueError, match=r"00001\.png holds id 9"):  # proposals are not first-frame objects
        score_folder(results, root, "val", options=ScoreOptions(task="semi"))
    with pytest.raises(ValueError, match="max_proposals"):
        score_folder(results, root, "val", options=ScoreOptions(task="unsupervised", max_proposals=8))
    with pytest.raises(ValueError, match=r"score\.task"):
        score_folder(results, root, "val", options=ScoreOptions(task="weakly"))


def _write_perturbed(sample: Path, results: Path) -> None:
    for seq in SEQUENCES:
        (results / seq).mkdir(parents=True)
        for t, p in enumerate(sorted((sample / "Annotations" / "480p" / seq).glob("*.png"))):
            write_palette_png(results / seq / p.name, _perturb(read_palette_png(p)[0], t))


def test_workers_and_torch_fallback_give_identical_tables(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinosavi.metrics import compiled

    results = tmp_path / "results"
    _write_perturbed(sample, results)
    serial = score_folder(results, sample, "val", options=ScoreOptions(workers=1))
    assert [o.name for o in serial.objects] == [f"{s}_1" for s in SEQUENCES]
    assert score_folder(results, sample, "val", options=ScoreOptions(workers=3)).objects == serial.objects
    monkeypatch.setattr(compiled, "_jf", None)
    assert score_folder(results, sample, "val", options=ScoreOptions(workers=2)).objects == serial.objects
    with pytest.raises(ValueError, match="workers"):
        score_folder(results, sample, "val", options=ScoreOptions(workers=-1))


def test_first_failing_sequence_is_reported_with_workers(sample: Path, tmp_path: Path) -> None:
    results = _copy_annotations(sample, tmp_path / "results")
    first = sorted((results / SEQUENCES[0]).glob("*.png"))[5]
    second = sorted((results / SEQUENCES[1]).glob("*.png"))[2]
    first.unlink()
    second.unlink()
    with pytest.raises(FileNotFoundError, match=first.name) as info:
        score_folder(results, sample, "val", options=ScoreOptions(workers=2))
    assert SEQUENCES[0] in str(info.value)


def test_cli_scores_without_importing_torch(sample: Path, tmp_path: Path) -> None:
    from dinosavi.metrics import compiled

    if not compiled.available():
        pytest.skip("without the compiled kernel mode=score uses the torch path")
    results = _copy_annotations(sample, tmp_path / "results")
    code = (
        "import runpy, sys\n"
        "sys.argv = ['dinosavi', *sys.argv[1:]]\n"
        "runpy.run_module('dinosavi', run_name='__main__')\n"
        "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n"
    )
    args = ["mode=score", f"results={results}", f"data.root={sample}", f"hydra.run.dir={tmp_path / 'run'}"]
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch not imported" in out.stdout
    assert (tmp_path / "run" / "global_results-val.csv").read_text().splitlines()[1].startswith("1.000,1.000")
