"""Encoder weights from local files (safetensors, torch pickles, a folder), loaded strictly into a timm ViT, and
the errors that name the file to fetch or the path that is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from dinosavi.encoders import create_encoder
from dinosavi.encoders.weights import load_state_dict_file, load_timm_weights
from tests.encoders.conftest import TINY

pytestmark = pytest.mark.usefixtures("offline")


def _small_vit() -> VisionTransformer:
    return VisionTransformer(img_size=32, patch_size=16, embed_dim=16, depth=1, num_heads=2, num_classes=0)


def test_weights_from_directory_and_intermediate_layers(saved: tuple[Path, Path]) -> None:
    timm_file, _ = saved
    encoder = create_encoder(f"timm:{TINY}", weights=str(timm_file.parent), layers=(3, -1))
    out = encoder.encode(torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8))
    assert [t.shape for t in out.intermediate] == [(1, 192, 30, 45)] * 2  # short side 480
    torch.testing.assert_close(out.intermediate[1], out.features)


def test_offline_without_weights_fails_fast() -> None:
    with pytest.raises(RuntimeError, match=r"`timm/vit_small_patch8_224\.dino` `model\.safetensors`.*"
                                           r"encoder\.weights=<path"):
        create_encoder("dino_vits8")


def test_missing_local_weights() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_encoder("dino_vits16", weights="/nonexistent/model.safetensors")
    with pytest.raises(FileNotFoundError, match="expected one of"):
        load_state_dict_file(Path(__file__).parent)


@pytest.mark.parametrize(("suffix", "wrap"), [(".pth", None), (".pt", "model"), (".bin", "state_dict"),
                                              (".pth", "teacher")])
def test_torch_files_are_unwrapped(tmp_path: Path, suffix: str, wrap: str | None) -> None:
    state = {"a": torch.arange(3.0), "b": torch.ones(2, 2)}
    path = tmp_path / f"weights{suffix}"
    torch.save(state if wrap is None else {wrap: state, "epoch": 3}, path)
    loaded = load_state_dict_file(path)
    assert sorted(loaded) == ["a", "b"] and torch.equal(loaded["a"], state["a"])


def test_a_folder_prefers_model_safetensors(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(2)}, tmp_path / "pytorch_model.bin")
    assert torch.equal(load_state_dict_file(tmp_path)["w"], torch.zeros(2))
    save_file({"w": torch.ones(2)}, str(tmp_path / "model.safetensors"))
    assert torch.equal(load_state_dict_file(tmp_path)["w"], torch.ones(2))


def test_unsupported_file_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "weights.npz"
    path.write_bytes(b"\0")
    with pytest.raises(ValueError, match=rf"unsupported weights file {path}; expected \.safetensors, \.pth"):
        load_state_dict_file(path)


def test_timm_weights_load_strictly_without_the_classifier(tmp_path: Path) -> None:
    source = _small_vit()
    state = {k: v.clone() for k, v in source.state_dict().items()}
    head = {"head.weight": torch.zeros(10, 16), "head.bias": torch.zeros(10)}  # a classifier the model lacks
    save_file({**state, **head}, str(tmp_path / "w.safetensors"))
    model = load_timm_weights(_small_vit(), tmp_path / "w.safetensors")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    del state["blocks.0.norm1.weight"]
    save_file(state, str(tmp_path / "missing.safetensors"))
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*blocks\.0\.norm1\.weight"):
        load_timm_weights(_small_vit(), tmp_path / "missing.safetensors")


def test_a_model_without_hub_weights_needs_a_path() -> None:
    with pytest.raises(RuntimeError, match=r"timm model `VisionTransformer` has no hub weights; pass encoder\.weights"):
        load_timm_weights(_small_vit(), None)
