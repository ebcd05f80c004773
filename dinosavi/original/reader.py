"""Reading the original DINOSAVi's ``.ckpt`` files (``torch.save`` of a plain dict) without running their code.

A file is read with ``torch.load(weights_only=True)`` first. Checkpoints written by the torch the original
pinned (2.0, before pytorch/pytorch#123775) also pickle ``OneCycleLR.anneal_func``, a bound method whose
owner holds the optimizer; ``weights_only`` rejects them. Those are read again by :class:`_TolerantUnpickler`,
which builds tensors, containers and dtypes and replaces every other global (the scheduler, the optimizer,
``getattr``) by an inert :class:`Unresolved` placeholder: nothing in the file is called. Only ``model`` and
``cfg`` are kept, and they must be plain data; a placeholder in either is an error naming the key.
"""

from __future__ import annotations

import collections
import logging
import pickle
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["OriginalCheckpoint", "Unresolved", "is_torch_file", "read_original_checkpoint"]

log = logging.getLogger(__name__)

_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a"  # torch's legacy format: a protocol-2 pickle whose first item is a long magic number


def is_torch_file(path: str | Path) -> bool:
    """Whether ``path`` is a ``torch.save`` file (a zip archive, or a legacy pickle stream) and not safetensors
    (an 8-byte header length, then the JSON header)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":
        return False
    return head[:4] == _ZIP_MAGIC or head[:3] == _LEGACY_MAGIC


@dataclass
class OriginalCheckpoint:
    """The parts of an original ``.ckpt`` that inference and fine-tuning need.

    Attributes:
        path: the file.
        model: ``SlotTrainer.state_dict()`` of the original, key -> tensor.
        config: the original's composed Hydra config, interpolations unresolved (``OmegaConf.to_container``).
        epoch: the epoch the original recorded.
        replaced: globals the tolerant reader replaced by placeholders (empty when ``weights_only`` sufficed).
    """

    path: Path
    model: dict[str, Tensor]
    config: dict[str, Any]
    epoch: int
    replaced: tuple[str, ...] = ()


class Unresolved:
    """Stands in for an object of a global the reader does not construct; it keeps nothing callable."""

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass  # the state (e.g. a scheduler's __dict__) is dropped

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<unresolved {self.qualname}>"


def _placeholder(qualname: str) -> type[Unresolved]:
    return type("Unresolved", (Unresolved,), {"qualname": qualname})


def _allowed() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "defaultdict"): collections.defaultdict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
        ("torch", "Size"): torch.Size,
    }
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"):
        allowed[("torch._utils", name)] = getattr(torch._utils, name)
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed[("torch", name)] = getattr(torch, name)
    return allowed


class _TolerantUnpickler(pickle.Unpickler):
    """An unpickler that constructs only tensors, containers and dtypes; other globals become placeholders,
    whose names are added to ``replaced``."""

    allowed = _allowed()
    replaced: set[str]

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)  # protocol-2 names
        found = self.allowed.get((module, name))
        if found is not None:
            return found
        qualname = f"{module}.{name}"
        self.replaced.add(qualname)
        return _placeholder(qualname)


def _tolerant_pickle_module(replaced: set[str]) -> types.ModuleType:
    """A module with the ``Unpickler``/``load`` that ``torch.load(pickle_module=...)`` uses, recording into
    ``replaced``; ``load`` (used by legacy files for their header) goes through the same unpickler."""
    unpickler = type("Unpickler", (_TolerantUnpickler,), {"replaced": replaced})

    def load(file: Any, **kwargs: Any) -> Any:
        return unpickler(file, **kwargs).load()

    module = types.ModuleType("dinosavi_tolerant_pickle")
    module.__dict__.update(Unpickler=unpickler, load=load)
    return module


def _load(path: Path) -> tuple[Any, tuple[str, ...]]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True), ()
    except pickle.UnpicklingError as strict_error:
        log.info("%s: weights_only loading failed (%s); reading it with placeholders for non-tensor objects",
                 path, str(strict_error).splitlines()[0])
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a readable original DINOSAVi checkpoint: {e}") from e
    replaced: set[str] = set()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_tolerant_pickle_module(replaced))
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as e:
        raise ValueError(f"{path} is not a readable original DINOSAVi checkpoint: {e}") from e
    return obj, tuple(sorted(replaced))


def _find_unresolved(value: Any, where: str) -> str | None:
    """The path of the first placeholder inside ``value``, or None."""
    if isinstance(value, Unresolved):
        return f"{where} ({value.qualname})"
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = _find_unresolved(v, f"{where}.{k}")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = _find_unresolved(v, f"{where}[{i}]")
            if found:
                return found
    return None


def read_original_checkpoint(path: str | Path) -> OriginalCheckpoint:
    """Read the model weights and the config of an original DINOSAVi ``.ckpt``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a ``torch.save`` dict with ``model`` (tensors) and ``cfg`` (plain data), or
            one of them holds an object the reader does not construct (named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    obj, replaced = _load(path)
    if not isinstance(obj, Mapping) or "model" not in obj or "cfg" not in obj:
        keys = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{path} is not an original DINOSAVi checkpoint: expected a dict with `model` and `cfg`, "
                         f"got {keys}")
    for key in ("model", "cfg"):
        found = _find_unresolved(obj[key], key)
        if found:
            raise ValueError(f"{path}: `{found}` is an object this reader does not construct; only plain tensors "
                             f"and data are read from `model` and `cfg`")
    model, cfg = obj["model"], obj["cfg"]
    if not isinstance(model, Mapping) or not all(isinstance(v, Tensor) for v in model.values()):
        raise ValueError(f"{path}: `model` must map names to tensors (the original SlotTrainer's state dict)")
    if not isinstance(cfg, Mapping):
        raise ValueError(f"{path}: `cfg` must be the original's config dict, got {type(cfg).__name__}")
    if replaced:
        log.info("%s: read with placeholders for %s (not needed for the model)", path, ", ".join(replaced))
    epoch = obj.get("epoch", 0)
    return OriginalCheckpoint(path, dict(model), dict(cfg), int(epoch) if isinstance(epoch, int) else 0, replaced)
