"""Checkpoints: exact round trips, atomic writes that keep the previous file, errors."""

import errno
import json

import pytest
import torch

from dinosavi.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint


def _setup():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=10)
    return model, opt, sched


def _step(model, opt, sched):
    loss = model(torch.randn(5, 3)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


def test_roundtrip_restores_training_exactly(tmp_path):
    torch.manual_seed(0)
    model, opt, sched = _setup()
    _step(model, opt, sched)
    path = save_checkpoint(tmp_path / "c.safetensors", model, {"model": {"x": 1}}, 1, opt, sched, capture_rng(),
                           {"epoch": 2})
    _step(model, opt, sched)
    expected = [p.detach().clone() for p in model.parameters()]

    ckpt = load_checkpoint(path)
    assert ckpt.step == 1 and ckpt.config == {"model": {"x": 1}} and ckpt.extra == {"epoch": 2}
    model2, opt2, sched2 = _setup()
    model2.load_state_dict(ckpt.model, strict=True)
    opt2.load_state_dict(ckpt.optimizer)
    sched2.load_state_dict(ckpt.scheduler)
    restore_rng(ckpt.rng)
    _step(model2, opt2, sched2)
    for a, b in zip(expected, model2.parameters()):
        assert torch.equal(a, b)


def test_weights_only_and_atomic_write(tmp_path):
    model, _, _ = _setup()
    path = save_checkpoint(tmp_path / "sub" / "w.safetensors", model, {}, 0)
    assert [p.name for p in path.parent.iterdir()] == ["w.safetensors"]  # no temporary file left behind
    ckpt = load_checkpoint(path)
    assert ckpt.optimizer is None and ckpt.rng is None


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    model, _, _ = _setup()
    path = save_checkpoint(tmp_path / "w.safetensors", model, {"v": 1}, 0)
    before = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("dinosavi.checkpoint.save_file", crash)
    with pytest.raises(OSError, match=rf"Cannot write {path}: disk full; the previous w.safetensors is unchanged"):
        save_checkpoint(path, model, {"v": 2}, 1)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
    assert load_checkpoint(path).config == {"v": 1}


@pytest.mark.parametrize("failing", ["write", "fsync", "rename"])
def test_full_disk_keeps_the_previous_checkpoint_loadable(tmp_path, monkeypatch, failing):
    model, opt, sched = _setup()
    _step(model, opt, sched)
    path = save_checkpoint(tmp_path / "last.safetensors", model, {"v": 1}, 1, opt, sched, capture_rng())
    before = path.read_bytes()
    no_space = OSError(errno.ENOSPC, "No space left on device")

    def fail(*args, **kwargs):
        raise no_space

    target = {"write": "dinosavi.checkpoint.save_file", "fsync": "os.fsync", "rename": "os.replace"}[failing]
    monkeypatch.setattr(target, fail)
    with pytest.raises(OSError, match=rf"Cannot write {path}: No space left on device; the previous") as info:
        save_checkpoint(path, model, {"v": 2}, 2, opt, sched, capture_rng())
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]
    assert load_checkpoint(path).step == 1


def test_read_only_folder_is_named(tmp_path, monkeypatch):
    model, _, _ = _setup()
    path = save_checkpoint(tmp_path / "w.safetensors", model, {"v": 1}, 0)

    def read_only(*args, **kwargs):  # what mkstemp meets in a read-only folder (chmod does not stop root)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(PermissionError, match=rf"Cannot write {path}: Permission denied; the previous"):
        save_checkpoint(path, model, {"v": 2}, 1)
    monkeypatch.undo()
    assert load_checkpoint(path).config == {"v": 1}


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors"):
        load_checkpoint(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"junk\.safetensors"):
        load_checkpoint(junk)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="not a dinosavi checkpoint"):
        load_checkpoint(other)


def test_config_stored_as_json_metadata(tmp_path):
    from safetensors import safe_open

    model, _, _ = _setup()
    path = save_checkpoint(tmp_path / "w.safetensors", model, {"model": {"slot_dim": 8}}, 3)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["dinosavi"])
    assert meta["config"] == {"model": {"slot_dim": 8}} and meta["step"] == 3
