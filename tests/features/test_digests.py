"""The feature store's keys: digests of JSON, of file bytes (never an mtime), of a video frame, of weights, and the
fingerprint of an encoder."""

from __future__ import annotations

import copy
import hashlib
import os

import numpy as np
import torch
from torch import nn

from dinosavi.features.digests import (
    encoder_fingerprint,
    file_digest,
    json_digest,
    video_frame_digest,
    weights_digest,
)


def test_json_digest_is_sha256_of_sorted_json():
    expected = hashlib.sha256(b'{"a": [2, 3], "b": 1}').hexdigest()
    assert json_digest({"b": 1, "a": [2, 3]}) == json_digest({"a": [2, 3], "b": 1}) == expected
    assert json_digest({"a": [3, 2], "b": 1}) != expected


def test_file_digest_is_sha256_of_the_bytes_and_ignores_mtime(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (5 << 19) + 7, dtype=np.uint8).tobytes()  # 2.5 MiB: 3 chunks
    path = tmp_path / "frame.bin"
    path.write_bytes(data)
    assert file_digest(path) == file_digest(str(path)) == hashlib.sha256(data).hexdigest()
    os.utime(path, (1_000_000, 1_000_000))
    assert file_digest(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert file_digest(path) != hashlib.sha256(data).hexdigest()


def test_video_frame_digest_names_file_rate_and_index():
    digest = video_frame_digest("abc", 8.0, 3)
    assert digest == json_digest({"video": "abc", "frame_rate": 8.0, "index": 3})
    others = {video_frame_digest("abd", 8.0, 3), video_frame_digest("abc", None, 3), video_frame_digest("abc", 8.0, 4)}
    assert digest not in others and len(others) == 3


def test_weights_digest_hashes_names_dtypes_shapes_and_bytes():
    layer = nn.Linear(2, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(6.0).view(3, 2))
        layer.bias.copy_(torch.tensor([1.0, -1.0, 0.5]))
    expected = hashlib.sha256()
    for name, tensor in (("weight", layer.weight), ("bias", layer.bias)):
        expected.update(f"{name}|torch.float32|{tuple(tensor.shape)}|".encode())
        expected.update(tensor.detach().numpy().tobytes())
    assert weights_digest(layer) == expected.hexdigest()
    assert weights_digest(copy.deepcopy(layer)) == expected.hexdigest()
    assert weights_digest(copy.deepcopy(layer).double()) != expected.hexdigest()
    changed = copy.deepcopy(layer)
    with torch.no_grad():
        changed.bias[2] = 0.25
    assert weights_digest(changed) != expected.hexdigest()


def test_weights_digest_of_an_empty_tensor():
    module = nn.Module()
    module.register_buffer("empty", torch.zeros(0, 4))
    expected = hashlib.sha256(b"empty|torch.float32|(0, 4)|").hexdigest()
    assert weights_digest(module) == expected


def test_encoder_fingerprint_names_what_the_features_depend_on():
    from dinosavi.encoders.registry import create_encoder

    encoder = create_encoder("vit_tiny_random").freeze()
    fingerprint = encoder_fingerprint(encoder)
    assert fingerprint["class"] == "dinosavi.encoders.vit.TinyRandomViT"
    assert (fingerprint["feature_dim"], fingerprint["patch_size"], fingerprint["num_heads"]) == (64, 8, 4)
    assert fingerprint["precision"] == "fp32" and fingerprint["weights"] == weights_digest(encoder)
    assert fingerprint["preprocess"] == {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                                         "interpolation": "bicubic"}
    assert json_digest(fingerprint) == json_digest(encoder_fingerprint(create_encoder("vit_tiny_random")))
    half = encoder_fingerprint(create_encoder("vit_tiny_random", precision="bf16"))
    assert half["precision"] == "bf16" and half["weights"] == fingerprint["weights"]
