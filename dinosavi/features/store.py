"""A verified on-disk store of tensor rows by key: safetensors shards and a manifest.

Layout::

    <store>/manifest.json                     key -> shard, row and CRC32 of each tensor row
    <store>/shards/<space>/<group>.<id>.safetensors

One shard holds a group of rows (the frames of a sequence or a video) of one *space* (encoder +
resolution, see :mod:`dinosavi.features.space`), each tensor ``(T, ...)``; floating tensors in fp16
(fp32 by option). Reading consecutive rows is one file open and one read per tensor. Shards and the
manifest are written to a temporary name and renamed, so nothing half-written is ever read; a full
disk or a read-only folder is an error naming the file, and what was stored before stays readable. A
row whose CRC32 disagrees with the manifest (a flipped byte, a truncated file) is logged with its path,
forgotten, and recomputed by the caller. One process writes a store at a time.

Shapes: ``T`` rows (frames).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as safetensors_save
from torch import Tensor

from dinosavi.atomic import write_atomic
from dinosavi.features.digests import json_digest

__all__ = ["DTYPES", "FeatureStore"]

log = logging.getLogger(__name__)

STORE_VERSION = 1
DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "fp32": torch.float32}
_NUMPY = {"F16": np.float16, "F32": np.float32, "U8": np.uint8}


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "group"


class _CorruptError(Exception):
    """A shard that cannot be read or whose rows fail their checksum."""


def _runs(rows: list[int]) -> list[tuple[int, int, int]]:
    """``(position in rows, first row, count)`` for each run of consecutive rows."""
    out: list[tuple[int, int, int]] = []
    for i, row in enumerate(rows):
        if out and out[-1][1] + out[-1][2] == row:
            pos, first, count = out[-1]
            out[-1] = (pos, first, count + 1)
        else:
            out.append((i, row, 1))
    return out


class FeatureStore:
    """A folder of feature shards and their manifest.

    Args:
        root: the store folder (created when absent).
        dtype: ``fp16`` or ``fp32``, the dtype new shards are written in.
        flush_every: seconds between manifest writes (0: after every shard); :meth:`flush` writes it now.

    Raises:
        ValueError: an unknown dtype, or a manifest that is not a dinosavi store manifest.
    """

    def __init__(self, root: str | Path, dtype: str = "fp16", flush_every: float = 0.0) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"Unknown feature store dtype `{dtype}`; expected one of {sorted(DTYPES)}")
        self.root, self.dtype, self.flush_every = Path(root), dtype, flush_every
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / "manifest.json"
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, object]] = {}
        self._lengths: dict[str, int] = {}
        self._dirty, self._flushed = False, time.monotonic()
        if self.manifest_path.is_file():
            try:
                data = json.loads(self.manifest_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{self.manifest_path} is not valid JSON ({error}); move it away to rebuild") \
                    from error
            if not isinstance(data, dict) or data.get("version") != STORE_VERSION:
                raise ValueError(
                    f"{self.manifest_path} is not a version-{STORE_VERSION} dinosavi feature store manifest"
                )
            self._entries, self._lengths = data["entries"], data.get("lengths", {})

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def length(self, source: str) -> int | None:
        """Frames recorded for a source (a decoded video) by :meth:`set_length`; None when unknown."""
        return self._lengths.get(source)

    def set_length(self, source: str, length: int) -> None:
        """Record that ``source`` decodes to ``length`` frames (so a rerun need not decode it)."""
        with self._lock:
            self._lengths[source] = length
            self._dirty = True

    def flush(self) -> None:
        """Write the manifest atomically when it changed.

        Raises:
            OSError: the manifest could not be written (full disk, read-only folder); the message names
                it, the previous manifest stays, and the next flush tries again.
        """
        with self._lock:
            if not self._dirty:
                return
            data = {"version": STORE_VERSION, "entries": dict(self._entries), "lengths": dict(self._lengths)}
            self._dirty = False
        try:
            write_atomic(self.manifest_path, json.dumps(data, separators=(",", ":")).encode())
        except OSError:
            with self._lock:
                self._dirty = True  # the manifest on disk is the previous one; the next flush retries
            raise
        self._flushed = time.monotonic()

    def write(self, space: str, group: str, keys: Sequence[str], tensors: dict[str, Tensor]) -> Path:
        """Write one shard (``T = len(keys)`` rows per tensor) and record its entries.

        Args:
            space: the encoder + resolution id (a folder under ``shards/``).
            group: a readable name (sequence or video) used in the file name.
            keys: the entry key of each row.
            tensors: name -> ``(T, ...)`` tensor; floating tensors are stored in the store's dtype.

        Returns:
            The shard's path.

        Raises:
            OSError: the shard or the manifest could not be written; the message names the file. Entries
                already stored, and the manifest on disk, stay as they were.
        """
        T = len(keys)
        if T == 0 or any(t.shape[0] != T for t in tensors.values()):
            raise ValueError(f"shard {group}: expected {T} rows per tensor, got "
                             f"{ {n: tuple(t.shape) for n, t in tensors.items()} }")
        dtype = DTYPES[self.dtype]
        stored = {n: (t.to(dtype) if t.is_floating_point() else t).detach().cpu().contiguous()
                  for n, t in tensors.items()}
        rel = f"shards/{space[:16]}/{_safe_name(group)}.{json_digest(list(keys))[:16]}.safetensors"
        write_atomic(self.root / rel, safetensors_save(stored, metadata={"dinosavi_store": str(STORE_VERSION)}))
        rows = {n: t.view(T, -1).view(torch.uint8).numpy() for n, t in stored.items()}
        with self._lock:
            for i, key in enumerate(keys):
                self._entries[key] = {"shard": rel, "row": i,
                                      "crc": {n: zlib.crc32(r[i].data) for n, r in rows.items()}}
            self._dirty = True
        if time.monotonic() - self._flushed >= self.flush_every:
            self.flush()
        return self.root / rel

    def read(self, keys: Sequence[str], names: Sequence[str]) -> dict[str, Tensor] | None:
        """The rows of ``keys`` for tensors ``names`` (each ``(len(keys), ...)``, float32 or uint8).

        Returns None when an entry is missing, or corrupt: then the warning names the shard, and its
        entries are forgotten so the caller recomputes them. A name a shard lacks is left out.
        """
        entries = [self._entries.get(k) for k in keys]
        if not keys or any(e is None for e in entries):
            return None
        by_shard: dict[str, list[int]] = {}
        for i, entry in enumerate(entries):
            assert entry is not None
            by_shard.setdefault(str(entry["shard"]), []).append(i)
        parts: dict[str, list[tuple[list[int], np.ndarray]]] = {}
        for rel, positions in by_shard.items():
            try:
                for name, array in self._read_shard(rel, [entries[i] or {} for i in positions], names).items():
                    parts.setdefault(name, []).append((positions, array))
            except _CorruptError as error:
                log.warning("feature store: corrupt entry in %s (%s); it will be recomputed", self.root / rel, error)
                self._forget(rel)
                return None
        out = {}
        for name, pieces in parts.items():
            if sum(len(p) for p, _ in pieces) != len(keys):
                continue  # a tensor some shards lack
            array = pieces[0][1]
            if len(pieces) > 1:
                array = np.empty((len(keys), *array.shape[1:]), array.dtype)
                for positions, piece in pieces:
                    array[positions] = piece
            tensor = torch.from_numpy(array)
            out[name] = tensor.float() if tensor.is_floating_point() else tensor
        return out

    def _forget(self, rel: str) -> None:
        with self._lock:
            for key in [k for k, e in self._entries.items() if e["shard"] == rel]:
                del self._entries[key]
            self._dirty = True

    def _read_shard(self, rel: str, entries: list[dict], names: Sequence[str]) -> dict[str, np.ndarray]:
        """Rows of one shard, checked against their CRC32; raises ``_CorruptError``."""
        rows = [int(e["row"]) for e in entries]
        out = {}
        try:
            with open(self.root / rel, "rb") as handle:
                size = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(size))
                for name in names:
                    if name not in header:
                        continue
                    info = header[name]
                    dtype, shape = _NUMPY[info["dtype"]], tuple(info["shape"])
                    begin, end = info["data_offsets"]
                    row_bytes = (end - begin) // shape[0]
                    array = np.empty((len(rows), *shape[1:]), dtype)
                    flat = array.reshape(len(rows), -1).view(np.uint8)
                    for pos, first, count in _runs(rows):
                        if first + count > shape[0]:
                            raise _CorruptError(f"row {first + count - 1} beyond the {shape[0]} rows of `{name}`")
                        handle.seek(8 + size + begin + first * row_bytes)
                        if handle.readinto(flat[pos:pos + count].data.cast("B")) != count * row_bytes:
                            raise _CorruptError(f"`{name}` is truncated")
                    for i, entry in enumerate(entries):
                        if zlib.crc32(flat[i].data) != entry["crc"].get(name):
                            raise _CorruptError(f"checksum mismatch of `{name}` row {rows[i]}")
                    out[name] = array
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise _CorruptError(f"unreadable: {error}") from error
        return out
