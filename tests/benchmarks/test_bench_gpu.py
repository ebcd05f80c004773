"""``benchmarks/bench_gpu.py``: the peak table, MFU's peak, the part runner's time cap, and the whole script as
``--smoke`` on the CPU, so that it still runs on the day a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from benchmarks import bench_gpu
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "bench_gpu.py"


@pytest.mark.parametrize(("name", "entry"), [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200 SXM"), ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA GH200 480GB", "GH200"),
    ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA A100 80GB PCIe", "A100"), ("NVIDIA L40S", "L40S"),
    ("NVIDIA L40", "L40"), ("NVIDIA L4", "L4"), ("NVIDIA A10", "A10"), ("NVIDIA A10G", None), ("Tesla V100-SXM2", None),
])
def test_device_names_find_their_peak(name, entry):
    found = bench_gpu.find_peak(name)
    assert (found[0] if found else None) == entry


def test_mfu_uses_the_peak_of_the_math_that_ran():
    env = {"peak": {"bf16": 989.5, "tf32": 494.5, "fp32": 67.0}, "tf32_matmul": False}
    assert bench_gpu.peak_for("bf16", env) == 989.5e12
    assert bench_gpu.peak_for("fp32", env) == 67.0e12  # torch's default: fp32 matmuls without TF32
    assert bench_gpu.peak_for("fp32", env | {"tf32_matmul": True}) == 494.5e12
    assert bench_gpu.peak_for("bf16", {"peak": None}) is None  # unknown device: no MFU


def test_a_part_past_its_cap_is_killed_with_its_children(tmp_path):
    start = time.perf_counter()
    code, _ = bench_gpu._run_child([sys.executable, "-c", "import subprocess; subprocess.run(['sleep', '60'])"],
                                   tmp_path / "part.log", timeout=1.0)
    assert code is None and time.perf_counter() - start < 30


def test_record_refuses_a_smoke_run():
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--record"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "--record writes GPU results" in done.stderr


def test_markdown_says_what_failed_and_what_was_skipped():
    results = {"smoke": False, "device": "cuda", "date": "2026-12-07", "budget_s": 480.0, "total_s": 12.0, "parts": {
        "env": {"status": "ok", "seconds": 3.0, "env": {"name": "NVIDIA H100 80GB HBM3", "peak": None}},
        "train": {"status": "ok", "seconds": 5.0, "preset_batch": 16, "rows": [
            {"source": "cached", "precision": "fp32", "compile": None, "batch": 16, "which": "preset",
             "status": "out of memory", "error": "OutOfMemoryError: CUDA out of memory | 2 GiB"}]},
        "ddp": {"status": "skipped", "seconds": 0.0, "reason": "1 GPU: DDP needs 2 or more (not measured)"},
        "learning": {"status": "timeout", "seconds": 4.0, "reason": "killed at its 260 s cap", "rows": []},
    }}
    text = bench_gpu.to_markdown(results)
    assert "on NVIDIA H100 80GB HBM3" in text and "none (MFU not computed)" in text
    assert "| out of memory: OutOfMemoryError: CUDA out of memory / 2 GiB |" in text  # a cell, not a broken row
    assert "**DDP**: skipped — 1 GPU: DDP needs 2 or more" in text
    assert "**Learning**: timeout — killed at its 260 s cap" in text


@pytest.mark.slow
def test_smoke_run_measures_every_part_on_the_cpu(tmp_path):
    """The whole script at tiny sizes: every part runs (DDP as 2 gloo processes), the JSON and Markdown are
    written, the run says it is a smoke run, and benchmarks/RESULTS.md is left alone."""
    results_md = REPO_ROOT / "benchmarks" / "RESULTS.md"
    before = results_md.read_text()
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--device", "cpu", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "bench_gpu.json").read_text())
    parts = results["parts"]
    assert {p: parts[p]["status"] for p in bench_gpu.PARTS} == dict.fromkeys(bench_gpu.PARTS, "ok"), {
        p: (parts[p].get("log_tail") or parts[p].get("error")) for p in parts if parts[p]["status"] != "ok"}
    train = parts["train"]["rows"]
    assert all(r["status"] == "ok" and r["steps_per_s"] > 0 and r["mfu"] is None for r in train)  # CPU: no MFU
    assert {(r["source"], r["precision"], r["compile"]) for r in train} >= {
        ("cached", "fp32", None), ("cached", "bf16", None), ("online", "fp32", None), ("online", "bf16", None),
        ("cached", "bf16", "eager")}
    largest = [r for r in train if r["which"] == "largest"]
    assert len(largest) == 4 and all(r["batch"] == 4 and r["stopped_by"] == "max_batch" for r in largest)
    assert all(r["status"] == "ok" and r["ours_fps"] > 0 and r["timm_fps"] > 0 for r in parts["encoders"]["rows"])
    assert [r["measure"] for r in parts["eval"]["rows"] if r["status"] == "ok"] == [
        "lock-on, encoder fp32", "label propagation", "mode=score", "lock-on, encoder bf16"]
    assert "synthetic" in parts["eval"]["data"]  # no DAVIS sample given to a smoke run: said so
    assert parts["ddp"]["rows"][0]["processes"] == 2 and parts["ddp"]["rows"][0]["backend"] == "gloo"
    assert parts["learning"]["steps"] >= 2 and len(parts["learning"]["rows"]) == 2
    markdown = (tmp_path / "bench_gpu.md").read_text()
    assert "smoke run (tiny sizes; not a measurement)" in markdown
    for title in ("**Training step", "**Encoders at 480p**", "**Evaluation**", "**DDP**", "**Learning**"):
        assert title in markdown
    assert results_md.read_text() == before


def test_an_earlier_run_is_written_again_from_its_json(tmp_path):
    """``--from-json`` measures nothing: it writes the Markdown of a run fetched from the GPU machine (and with
    ``--record`` appends it), but refuses to record a smoke run."""
    gpu = {"smoke": False, "device": "cuda", "date": "2026-12-07", "budget_s": 480.0, "total_s": 400.0,
           "parts": {"env": {"status": "ok", "seconds": 3.0, "env": {"name": "NVIDIA H200", "peak": None}}}}
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "bench_gpu.json").write_text(json.dumps(gpu))
    done = subprocess.run([sys.executable, str(SCRIPT), "--from-json", str(tmp_path / "gpu" / "bench_gpu.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "on NVIDIA H200 (2026-12-07, measured)" in (tmp_path / "gpu" / "bench_gpu.md").read_text()
    (tmp_path / "smoke.json").write_text(json.dumps(gpu | {"smoke": True}))
    done = subprocess.run([sys.executable, str(SCRIPT), "--from-json", str(tmp_path / "smoke.json"), "--record"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "is a smoke or CPU run" in done.stderr
