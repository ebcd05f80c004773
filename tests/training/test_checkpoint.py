"""Checkpoints: exact round trips, atomic writes, digests that catch a flipped byte, legacy files, errors."""

import errno
import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dinosavi.training.checkpoint import LEGACY_FORMAT, capture_rng, restore_rng, save_checkpoint
from dinosavi.training.loading import load_checkpoint


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


def test_cuda_rng_states_of_more_gpus_than_this_machine_has(monkeypatch):
    """A checkpoint saved under torchrun on 2 GPUs resumes on 1: the state of the GPU it has is restored, the
    other is not set (torch.cuda.set_rng_state_all would index a GPU that is not there)."""
    restored: dict[int, torch.Tensor] = {}

    def set_rng_state(state: torch.Tensor, device: int = 0) -> None:
        if device >= 1:
            raise IndexError("tuple index out of range")  # torch.cuda.default_generators of one GPU
        restored[device] = state

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    state = {**{k: v for k, v in capture_rng().items() if k != "cuda"},
             "cuda": [torch.full((16,), 1, dtype=torch.uint8), torch.full((16,), 2, dtype=torch.uint8)]}
    restore_rng(state)
    assert list(restored) == [0] and torch.equal(restored[0], state["cuda"][0])


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

    monkeypatch.setattr("dinosavi.training.checkpoint.save_file", crash)
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

    target = {"write": "dinosavi.training.checkpoint.save_file", "fsync": "os.fsync", "rename": "os.replace"}[failing]
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

    def read_only(*args, **kwargs):  # what creating a file meets in a read-only folder (chmod does not stop root)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("dinosavi.atomic._create_temp", read_only)
    with pytest.raises(PermissionError, match=rf"Cannot write {path}: Permission denied; the previous"):
        save_checkpoint(path, model, {"v": 2}, 1)
    monkeypatch.undo()
    assert load_checkpoint(path).config == {"v": 1}


def _data_layout(path):
    """(start of the data section, {tensor name: (begin, end)} offsets into it) of a safetensors file."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    return 8 + size, {k: tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__"}


def _flip(path, position):
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def full_checkpoint(tmp_path):
    model, opt, sched = _setup()
    _step(model, opt, sched)
    return save_checkpoint(tmp_path / "c.safetensors", model, {"model": {"x": 1}}, 1, opt, sched, capture_rng())


def test_one_flipped_byte_anywhere_in_the_tensor_data_fails_naming_the_tensor(full_checkpoint):
    clean = full_checkpoint.read_bytes()
    start, offsets = _data_layout(full_checkpoint)
    end = start + max(e for _, e in offsets.values())
    positions = sorted({*range(start, end, max(1, (end - start) // 97)), end - 1})
    assert len(positions) > 90
    for position in positions:
        full_checkpoint.write_bytes(clean)
        _flip(full_checkpoint, position)
        (name,) = [k for k, (b, e) in offsets.items() if b <= position - start < e]
        with pytest.raises(ValueError, match=rf"{full_checkpoint} is damaged: tensor `{name}`"):
            load_checkpoint(full_checkpoint)
    full_checkpoint.write_bytes(clean)
    assert load_checkpoint(full_checkpoint).step == 1


def test_a_flipped_byte_in_the_header_fails(full_checkpoint):
    clean = full_checkpoint.read_bytes()
    start, _ = _data_layout(full_checkpoint)
    for position in range(0, start, max(1, start // 151)):
        full_checkpoint.write_bytes(clean)
        _flip(full_checkpoint, position)
        with pytest.raises(ValueError, match=str(full_checkpoint)):
            load_checkpoint(full_checkpoint)


def test_changed_config_fails(full_checkpoint):
    tensors = load_file(str(full_checkpoint))
    from safetensors import safe_open

    with safe_open(str(full_checkpoint), framework="pt") as f:
        metadata = f.metadata()
    metadata["dinosavi"] = metadata["dinosavi"].replace('"x": 1', '"x": 2')
    save_file(tensors, str(full_checkpoint), metadata=metadata)
    with pytest.raises(ValueError, match="damaged: its metadata"):
        load_checkpoint(full_checkpoint)


def test_legacy_checkpoint_loads_with_a_warning(full_checkpoint, caplog):
    from safetensors import safe_open

    tensors = load_file(str(full_checkpoint))
    with safe_open(str(full_checkpoint), framework="pt") as f:
        meta = json.loads(f.metadata()["dinosavi"])
    del meta["digests"]
    legacy = full_checkpoint.with_name("legacy.safetensors")
    save_file(tensors, str(legacy), metadata={"format": LEGACY_FORMAT, "dinosavi": json.dumps(meta)})
    with caplog.at_level(logging.WARNING, logger="dinosavi.training.checkpoint"):
        ckpt = load_checkpoint(legacy)
    assert "cannot be verified" in caplog.text and str(legacy) in caplog.text
    assert ckpt.step == 1 and ckpt.optimizer is not None
    for key, value in load_checkpoint(full_checkpoint).model.items():
        assert torch.equal(ckpt.model[key], value)


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


def test_a_folder_or_a_text_file_is_named_for_what_it_is(tmp_path):
    """From Python as from the CLI: a run folder is not "not found", a text file is not "header too large"."""
    with pytest.raises(ValueError, match=r"is a folder, not a checkpoint; expected .*checkpoints/last\.safetensors"):
        load_checkpoint(tmp_path)
    notes = tmp_path / "README.md"
    notes.write_text("# a text file, longer than a safetensors header length\n" * 4)
    with pytest.raises(ValueError, match=r"README\.md is not a readable safetensors checkpoint \(.*\), nor a torch "
                                         r"\.ckpt; expected a checkpoint written by mode=train"):
        load_checkpoint(notes)


def test_config_stored_as_json_metadata(tmp_path):
    from safetensors import safe_open

    model, _, _ = _setup()
    path = save_checkpoint(tmp_path / "w.safetensors", model, {"model": {"slot_dim": 8}}, 3)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["dinosavi"])
    assert meta["config"] == {"model": {"slot_dim": 8}} and meta["step"] == 3


def test_a_checkpoint_written_before_the_model_held_its_frame_module_loads(tmp_path):
    """checkpoint-keys-v1.safetensors was written by main at 25d9535 (SlotModel inherited its per-frame
    modules: keys ``slot_attention.*``, ...), with the losses that model computed; today's model, its keys
    mapped (``models.keys.frame_keys_v1_to_v2``), loads strictly and computes the same losses."""
    from dinosavi.models.factory import build_model
    from dinosavi.models.keys import MODEL_KEYS
    from dinosavi.models.options import ModelConfig

    ckpt = load_checkpoint(Path(__file__).parent / "files" / "checkpoint-keys-v1.safetensors")
    assert ckpt.step == 7 and "frame.slot_attention.project_q.weight" in ckpt.model
    model = build_model(ModelConfig(**ckpt.config["model"]), 6)
    model.load_state_dict(ckpt.model, strict=True)
    features = torch.randn(2, 3, 6, 4, 5, generator=torch.Generator().manual_seed(1))
    model.train()
    torch.manual_seed(2)
    assert model.clip_loss(features).loss.item() == pytest.approx(ckpt.extra["clip_loss_train_seed2"], abs=1e-6)
    model.eval()
    torch.manual_seed(3)
    assert model.clip_loss(features).loss.item() == pytest.approx(ckpt.extra["clip_loss_eval_seed3"], abs=1e-6)
    # saved again, it records today's key version and reads back unchanged
    saved = save_checkpoint(tmp_path / "v2.safetensors", model, ckpt.config, ckpt.step)
    again = load_checkpoint(saved)
    assert sorted(again.model) == sorted(model.state_dict())
    from safetensors import safe_open

    with safe_open(str(saved), framework="pt") as f:
        assert json.loads(f.metadata()["dinosavi"])["model_keys"] == MODEL_KEYS


def test_model_keys_of_a_newer_version_are_refused():
    from dinosavi.models.keys import MODEL_KEYS, upgrade_model_keys

    with pytest.raises(ValueError, match=f"version {MODEL_KEYS + 1}"):
        upgrade_model_keys({}, MODEL_KEYS + 1, "x.safetensors")
