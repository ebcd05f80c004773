"""Checkpoints as safetensors: weights, optimizer state and RNG states, with the resolved config inside.

One file holds everything needed to rebuild the model (the config is stored in the safetensors
metadata as JSON) and to continue training. Files are written to a temporary name, flushed to disk
and renamed, so a crash, a full disk or a read-only folder never leaves a half-written checkpoint
under the final name and never touches the previous one.

Integrity: the metadata records a sha256 of every tensor (its dtype, shape and bytes) and a sha256 of
the metadata JSON itself; loading recomputes both, so one flipped byte anywhere in the tensor data
(or in the config) is an error naming the file and the tensor. Checkpoints written before digests
existed (format ``dinosavi-checkpoint/1``) still load, with a warning that they cannot be verified.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from dinosavi.atomic import atomic_path
from dinosavi.models.keys import MODEL_KEYS, upgrade_model_keys

__all__ = ["FORMAT", "Checkpoint", "capture_rng", "read_checkpoint", "restore_rng", "save_checkpoint",
           "tensor_digest"]

log = logging.getLogger(__name__)

FORMAT = "dinosavi-checkpoint/2"
LEGACY_FORMAT = "dinosavi-checkpoint/1"  # no digests: loads with a warning


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        config: the resolved config of the run, as a plain dict.
        step: optimisation steps taken.
        model: the model's state dict, under today's keys (:mod:`dinosavi.models.keys` maps older files').
        optimizer: the optimizer's state dict, or None for weights-only files.
        scheduler: the LR scheduler's state dict, or None.
        rng: RNG states (``torch``, ``numpy``, ``python``; ``cuda`` when saved on a GPU), or None.
        extra: any other JSON state saved by the trainer (e.g. the data position).
        path: the file it was loaded from (None when built in memory).
    """

    config: dict[str, Any]
    step: int
    model: dict[str, Tensor]
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def capture_rng() -> dict[str, Any]:
    """The state of every RNG training draws from."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng` captured. A run saved with more GPUs than this machine sees (trained on
    8, resumed on 1) restores the states of the GPUs it has; the others have no device to go to."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def _split_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Optimizer state -> (tensors keyed ``optimizer.<param>.<name>``, JSON-able remainder)."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, param_id, name = key.split(".", 2)
        state.setdefault(int(param_id), {})[name] = value
    for param_id, entries in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_to_file(rng: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors = {"rng.torch": rng["torch"]}
    for i, s in enumerate(rng.get("cuda", [])):
        tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    meta = {
        "numpy": [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [rng["python"][0], list(rng["python"][1]), rng["python"][2]],
    }
    return tensors, meta


def _rng_from_file(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    v, internal, gauss = meta["python"]
    state: dict[str, Any] = {
        "torch": tensors["rng.torch"],
        "numpy": (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached),
        "python": (v, tuple(internal), gauss),
    }
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda:
        state["cuda"] = [tensors[k] for k in cuda]
    return state


def tensor_digest(tensor: Tensor) -> str:
    """sha256 over a CPU tensor's dtype, shape and bytes (as safetensors stores them)."""
    t = tensor.detach().contiguous()
    digest = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    if t.numel():
        digest.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _meta_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    config: dict[str, Any],
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    rng: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, flushed, then renamed), with a
    sha256 digest of every tensor and of the metadata.

    Args:
        path: destination ``.safetensors`` file.
        model: the model whose ``state_dict`` is saved.
        config: the resolved run config (JSON-serialisable).
        step: optimisation steps taken.
        optimizer: saved when given, for resuming.
        scheduler: LR scheduler saved when given.
        rng: RNG states from :func:`capture_rng`.
        extra: other JSON-serialisable trainer state.

    Returns:
        The path written.

    Raises:
        OSError: the file could not be written (full disk, read-only folder); the message names the
            file, and an existing checkpoint at ``path`` is left as it was.
    """
    path = Path(path)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {"format": FORMAT, "step": step, "config": config, "extra": extra or {},
                            "model_keys": MODEL_KEYS}
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _split_optimizer(optimizer.state_dict())
        tensors.update({k: v.contiguous().cpu() for k, v in opt_tensors.items()})
    if scheduler is not None:
        meta["scheduler"] = {k: v for k, v in scheduler.state_dict().items() if _is_json(v)}
    if rng is not None:
        rng_tensors, meta["rng"] = _rng_to_file(rng)
        tensors.update(rng_tensors)
    meta["digests"] = {name: tensor_digest(t) for name, t in tensors.items()}
    text = json.dumps(meta)
    metadata = {"format": FORMAT, "dinosavi": text, "dinosavi_sha256": _meta_digest(text)}
    with atomic_path(path, fsync=True) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return path


def read_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint file written by :func:`save_checkpoint` (any kind of checkpoint, by path or name:
    :func:`dinosavi.training.loading.load_checkpoint`).

    Every tensor is checked against the digest recorded when it was saved (see the module docstring);
    a checkpoint of the legacy format, which has none, loads with a warning.

    Raises:
        ValueError: a file that is not a dinosavi checkpoint, or one that is damaged: truncated, unreadable,
            or a tensor (named) or the metadata does not match its digest.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable safetensors checkpoint ({e}), nor a torch .ckpt; expected a "
                         f"checkpoint written by mode=train or train(), or an original DINOSAVi .ckpt") from e
    if metadata.get("format") not in (FORMAT, LEGACY_FORMAT) or "dinosavi" not in metadata:
        raise ValueError(f"{path} is not a dinosavi checkpoint (expected metadata format {FORMAT!r})")
    meta = _verified_meta(path, metadata, tensors)
    groups: dict[str, dict[str, Tensor]] = {"model": {}, "optimizer": {}, "rng": {}}
    for key, value in tensors.items():
        prefix, rest = key.split(".", 1)
        groups[prefix][rest if prefix == "model" else key] = value
    return Checkpoint(
        config=meta["config"],
        step=int(meta["step"]),
        model=upgrade_model_keys(groups["model"], meta.get("model_keys", 1), str(path)),
        optimizer=_join_optimizer(groups["optimizer"], meta["optimizer"]) if "optimizer" in meta else None,
        scheduler=meta.get("scheduler"),
        rng=_rng_from_file(groups["rng"], meta["rng"]) if "rng" in meta else None,
        extra=meta.get("extra", {}),
        path=path,
    )


def _verified_meta(path: Path, metadata: dict[str, str], tensors: dict[str, Tensor]) -> dict[str, Any]:
    """The checkpoint's JSON metadata, after checking it and every tensor against their digests."""
    text = metadata["dinosavi"]
    if metadata["format"] == LEGACY_FORMAT:
        log.warning("%s was written before checkpoints carried digests (format %s); its tensors cannot be "
                    "verified. Save it again to add them.", path, LEGACY_FORMAT)
        return json.loads(text)
    if metadata.get("dinosavi_sha256") != _meta_digest(text):
        raise ValueError(f"{path} is damaged: its metadata (config, step, digests) does not match the sha256 "
                         f"recorded when it was saved")
    meta = json.loads(text)
    digests: dict[str, str] = meta.get("digests", {})
    unknown = sorted(set(tensors) ^ set(digests))
    if unknown:
        raise ValueError(f"{path} is damaged: tensor `{unknown[0]}` is "
                         f"{'not recorded in its digests' if unknown[0] in tensors else 'missing'}")
    for name, tensor in tensors.items():
        if tensor_digest(tensor) != digests[name]:
            raise ValueError(f"{path} is damaged: tensor `{name}` {tuple(tensor.shape)} does not match the sha256 "
                             f"recorded when it was saved (a changed byte); use another checkpoint")
    return meta


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
