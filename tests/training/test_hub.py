"""Models by name: mode=export writes a Hub-style folder that resume= loads to the same PNGs bit for bit; hf://
through huggingface_hub's cache and offline mode, with clear errors; push through a stand-in API (no network)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from dinosavi.cli import modes
from dinosavi.training.hub import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, load_pretrained, parse_hf_uri
from dinosavi.training.loading import load_checkpoint
from tests.conftest import compose_config

SYNTHETIC = ["data=synthetic", "data.synthetic.num_videos=4", "data.synthetic.num_frames=6",
             "data.synthetic.height=64", "data.synthetic.width=80", "data.synthetic.val_videos=1", "device=cpu"]


@pytest.fixture(scope="module")
def trained(tiny_synthetic, tmp_path_factory) -> tuple[Path, list[str]]:
    data = [f"data.root={tiny_synthetic}", *SYNTHETIC]
    cfg = compose_config("mode=train", "hparam=demo", "encoder=efficientnet_lite0", *data, "train.max_steps=2",
                         "train.save_every=2", "train.input_size=[64,80]", "data.batch_size=4")
    return modes.run_train(cfg, tmp_path_factory.mktemp("train"), []), data


def _eval(resume: str | Path, data: list[str], out: Path) -> dict[str, float]:
    overrides = [f"resume={resume}", *data, "data.split=val", "eval.short_side=64", "eval.videos=false",
                 "eval.report=false"]
    return modes.run_eval(compose_config("mode=eval", *overrides), out, overrides)


def _export(resume: str | Path, out: Path, *extra: str) -> Path:
    overrides = [f"resume={resume}", f"out={out}", *extra]
    return modes.run_export(compose_config("mode=export", *overrides), out.parent / "run", overrides)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> tuple[Path, Path, dict[str, float]]:
    """The trained checkpoint's evaluation, and its export with that evaluation's numbers in the card."""
    ckpt, data = trained
    base = tmp_path_factory.mktemp("export")
    scores = _eval(ckpt, data, base / "eval-checkpoint")
    folder = _export(ckpt, base / "model", f"export.results=[{base / 'eval-checkpoint'}]")
    return folder, base / "eval-checkpoint", scores


def test_export_then_resume_gives_the_same_pngs_bit_for_bit(trained, exported, tmp_path):
    ckpt, data = trained
    folder, before, scores = exported
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_NAME, CARD_NAME, WEIGHTS_NAME])
    again = _eval(folder, data, tmp_path / "eval-folder")
    assert again == scores
    pngs = sorted(p.relative_to(before) for p in (before / "results").rglob("*.png"))
    assert pngs and pngs == sorted(p.relative_to(tmp_path / "eval-folder")
                                   for p in (tmp_path / "eval-folder" / "results").rglob("*.png"))
    for png in pngs:
        assert (before / png).read_bytes() == (tmp_path / "eval-folder" / png).read_bytes()
    loaded, original = load_checkpoint(folder), load_checkpoint(ckpt)
    assert loaded.optimizer is None and loaded.step == original.step == 2
    assert loaded.config["model"] == original.config["model"] and loaded.config["encoder"] == original.config["encoder"]
    assert loaded.model.keys() == original.model.keys()
    assert all(torch.equal(loaded.model[k], original.model[k]) for k in original.model)


def test_the_model_card_states_what_the_model_is_and_what_was_measured(exported):
    folder, _, scores = exported
    card = (folder / CARD_NAME).read_text()
    assert card.startswith("---\nlibrary_name: dinosavi\n")
    # hparam=demo carries its encoder: efficientnet_lite0 at stride 16
    for fact in ("`demo`", "`efficientnet_lite0`, stride 16", "`data=synthetic`", "| steps | 2 of `train.max_steps=2`",
                 f"J&F-Mean {scores['J&F-Mean']:.3f}", "metrics-val.json (data=synthetic, eval=dinosavi, lock-on)", "resume=hf://<owner>/<name>"):
        assert fact in card, fact
    meta = json.loads((folder / CONFIG_NAME).read_text())
    assert meta["format"] == "dinosavi-pretrained/1" and meta["step"] == 2 and meta["config"]["resume"] is None
    assert "epoch" not in meta["extra"]  # training state stays out of a shared model


def test_a_card_without_measurements_says_so(trained, tmp_path):
    ckpt, _ = trained
    folder = _export(ckpt, tmp_path / "bare")
    assert "come with no measured numbers" in (folder / CARD_NAME).read_text()


def test_a_changed_byte_in_the_weights_is_named(exported, tmp_path):
    import shutil

    folder = Path(shutil.copytree(exported[0], tmp_path / "copy"))
    data = bytearray((folder / WEIGHTS_NAME).read_bytes())
    data[-1] ^= 0xFF
    (folder / WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model.safetensors is damaged: tensor `.*` does not match its sha256"):
        load_pretrained(folder)
    (folder / CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(folder / "nothing")
    with pytest.raises(FileNotFoundError, match="is not a model folder"):
        load_checkpoint(folder)


def test_hub_names_parse():
    assert parse_hf_uri("hf://owner/name") == ("owner/name", None)
    assert parse_hf_uri("hf://owner/name@v1.0") == ("owner/name", "v1.0")
    for bad in ("hf://name", "hf://a/b/c", "hf://owner/", "hf://owner/name@", "owner/name"):
        with pytest.raises(ValueError, match="expected hf://owner/name"):
            parse_hf_uri(bad)


def test_hf_offline_without_the_model_is_a_clear_error(trained, monkeypatch, tmp_path):
    _, data = trained
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(FileNotFoundError) as info:
        _eval("hf://owner/name@v1", data, tmp_path / "eval")
    message = str(info.value)
    for part in ("resume=hf://owner/name@v1", "owner/name@v1", str(cache), "HF_HUB_OFFLINE=1",
                 "hf download owner/name --revision v1", "https://huggingface.co/owner/name/tree/v1",
                 "resume=<folder>"):
        assert part in message, part


def test_hf_loads_from_the_offline_cache(exported, monkeypatch, tmp_path):
    """A model in huggingface_hub's cache layout loads with HF_HUB_OFFLINE=1 (no network is tried)."""
    import shutil

    folder = exported[0]
    cache = tmp_path / "hf-cache"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--owner--name"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    loaded = load_checkpoint("hf://owner/name")
    assert loaded.step == 2 and loaded.model.keys() == load_pretrained(folder).model.keys()


def test_without_huggingface_hub_the_error_says_how_to_get_the_model(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"pip install 'dinosavi\[hub\]'; or download config.json and "
                                          r"model.safetensors from https://huggingface.co/owner/name into"):
        load_checkpoint("hf://owner/name")


def test_push_uploads_the_folder_when_asked(trained, monkeypatch, tmp_path):
    import huggingface_hub

    calls: list[tuple[str, dict]] = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))
            return type("Commit", (), {"commit_url": "https://huggingface.co/me/model/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    ckpt, _ = trained
    with pytest.raises(ValueError, match=r"export.push=true needs export.repo=<owner/name>"):
        _export(ckpt, tmp_path / "nope", "export.push=true")
    folder = _export(ckpt, tmp_path / "model", "export.push=true", "export.repo=me/model", "export.private=true")
    assert calls[0] == ("create_repo", {"repo_id": "me/model", "private": True, "exist_ok": True})
    assert calls[1][0] == "upload_folder" and calls[1][1]["repo_id"] == "me/model"
    assert calls[1][1]["folder_path"] == str(folder) and calls[1][1]["revision"] is None
    assert "resume=hf://me/model " in (folder / CARD_NAME).read_text()  # the card names where it lives


def test_results_come_from_the_runs_that_measured_this_checkpoint(tmp_path, caplog):
    from dinosavi.training.hub import collect_results

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("step-0000001.safetensors", "step-0000002.safetensors"):
        (run / "checkpoints" / name).write_bytes(b"")
    (run / "eval" / "davis").mkdir(parents=True)
    (run / "eval" / "davis" / "metrics-val.json").write_text(json.dumps({"global": {"J&F-Mean": 0.5}}))
    last, earlier = run / "checkpoints" / "step-0000002.safetensors", run / "checkpoints" / "step-0000001.safetensors"
    assert collect_results([], last) == {"eval/davis/metrics-val.json": {"J&F-Mean": 0.5}}
    assert collect_results([], earlier) == {}  # the run evaluated its last model, not this one
    other = tmp_path / "other-eval"
    other.mkdir()
    (other / "config.yaml").write_text("resume: /elsewhere/model.safetensors\ndata:\n  name: davis\neval:\n"
                                       "  protocol: videosaur\n  lock_on: false\n")
    (other / "anchor-videosaur-val.json").write_text(json.dumps({"global": {"FG-ARI": 0.25, "mBO": 0.125}}))
    found = collect_results([str(other)], earlier)
    assert found == {"other-eval/anchor-videosaur-val.json (data=davis, eval=videosaur)": {"FG-ARI": 0.25,
                                                                                            "mBO": 0.125}}
    assert "evaluated resume=/elsewhere/model.safetensors, not the exported" in caplog.text
    with pytest.raises(FileNotFoundError, match=r"export\.results: .* does not exist"):
        collect_results([str(tmp_path / "missing")])
