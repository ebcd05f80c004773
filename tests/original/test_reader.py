"""Reading original .ckpt files: weights_only when possible, placeholders for pickled objects otherwise, and
nothing in the file is ever run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dinosavi.original.reader import is_torch_file, read_original_checkpoint
from dinosavi.training.loading import load_checkpoint

MARKER = Path("/tmp") / f"dinosavi-reader-test-{os.getpid()}"


class _RunsCode:
    """Unpickling this with the standard pickle module would run ``touch MARKER``."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def _old_torch_file(seed_reference: Path, path: Path, **extra) -> Path:
    """The headline checkpoint as torch 2.0 wrote them: the scheduler state holds the bound method
    ``anneal_func`` (whose owner holds the optimizer), plus ``extra`` entries."""
    ckpt = torch.load(seed_reference / "headline.ckpt", map_location="cpu", weights_only=True)
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-4, total_steps=10)
    ckpt["lr_scheduler"] = dict(scheduler.state_dict(), anneal_func=scheduler._anneal_func)
    ckpt.update(extra)
    torch.save(ckpt, path)
    return path


def test_reference_files_load_with_weights_only(seed_reference):
    ckpt = read_original_checkpoint(seed_reference / "headline.ckpt")
    assert ckpt.replaced == () and len(ckpt.model) == 44 and ckpt.epoch == 0
    assert ckpt.config["model"]["num_slots"] == "${hparam.slot.num_slots}"  # kept unresolved
    assert is_torch_file(seed_reference / "headline.ckpt")


def test_pickled_anneal_func_is_replaced_not_run(seed_reference, tmp_path):
    path = _old_torch_file(seed_reference, tmp_path / "old.ckpt", evil=_RunsCode())
    with pytest.raises(Exception, match=r"(?i)weights only|Unsupported"):
        torch.load(path, weights_only=True)  # what the plain safe loader says
    ckpt = read_original_checkpoint(path)
    assert not MARKER.exists()
    assert "torch.optim.lr_scheduler.OneCycleLR" in ckpt.replaced and "posix.system" in ckpt.replaced
    reference = read_original_checkpoint(seed_reference / "headline.ckpt")
    assert ckpt.model.keys() == reference.model.keys()
    assert all(torch.equal(ckpt.model[k], reference.model[k]) for k in ckpt.model)
    assert load_checkpoint(path).config["preset"] == "slot-s256d-line-t01-tline-ini5"


def test_an_object_inside_the_model_or_config_is_named(seed_reference, tmp_path):
    ckpt = torch.load(seed_reference / "headline.ckpt", map_location="cpu", weights_only=True)
    ckpt["cfg"]["hparam"]["general"]["lr"] = _RunsCode()
    torch.save(ckpt, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match=r"cfg\.hparam\.general\.lr \(posix\.system\)"):
        read_original_checkpoint(tmp_path / "bad.ckpt")
    assert not MARKER.exists()


def test_not_an_original_checkpoint(tmp_path):
    torch.save([1, 2], tmp_path / "list.ckpt")
    with pytest.raises(ValueError, match="expected a dict with `model` and `cfg`"):
        read_original_checkpoint(tmp_path / "list.ckpt")
    (tmp_path / "broken.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=r"broken\.ckpt is not a readable original DINOSAVi checkpoint"):
        read_original_checkpoint(tmp_path / "broken.ckpt")
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        read_original_checkpoint(tmp_path / "missing.ckpt")


def test_safetensors_are_never_taken_for_torch_files(tmp_path):
    from safetensors.torch import save_file

    for n in range(1, 300, 7):  # header lengths whose first byte is 0x80, 0x50 ('P'), ... included
        save_file({"x": torch.zeros(n)}, tmp_path / "a.safetensors", metadata={"pad": "p" * n})
        assert not is_torch_file(tmp_path / "a.safetensors")
    torch.save({"model": {}}, tmp_path / "b.ckpt")
    torch.save({"model": {}}, tmp_path / "c.ckpt", _use_new_zipfile_serialization=False)
    assert is_torch_file(tmp_path / "b.ckpt") and is_torch_file(tmp_path / "c.ckpt")
