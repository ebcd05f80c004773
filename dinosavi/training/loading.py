"""Any checkpoint by path or name, as a :class:`~dinosavi.training.checkpoint.Checkpoint`: the one reader that
``resume=`` and every mode use.

A safetensors file written by training (:func:`~dinosavi.training.checkpoint.read_checkpoint`), a model folder
or ``hf://owner/name[@revision]`` (:mod:`dinosavi.training.hub`: config and weights, no optimizer state), or an
original DINOSAVi ``.ckpt`` (:func:`dinosavi.original.convert_original_checkpoint`: converted config and
weights, no optimizer state).
"""

from __future__ import annotations

from pathlib import Path

from dinosavi.original import convert_original_checkpoint, is_torch_file
from dinosavi.training.checkpoint import Checkpoint, read_checkpoint
from dinosavi.training.hub import CONFIG_NAME, HF_PREFIX, WEIGHTS_NAME, download, load_pretrained

__all__ = ["load_checkpoint"]


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read the checkpoint at ``path``: a checkpoint file, a model folder, an ``hf://`` name or an original
    ``.ckpt``; any other folder (a run folder, say) is an error that names the checkpoint file expected.

    Raises:
        FileNotFoundError: no file at ``path``, or a model folder that lacks one of its two files.
        ValueError: a folder that is no model folder, a file that is not a dinosavi checkpoint, or one that is
            damaged: truncated, unreadable, or a tensor (named) or the metadata does not match its digest.
    """
    if isinstance(path, str) and path.startswith(HF_PREFIX):
        return load_pretrained(download(path))
    path = Path(path)
    if path.is_dir():
        if (path / CONFIG_NAME).exists() or (path / WEIGHTS_NAME).exists():  # a model folder (mode=export)
            return load_pretrained(path)  # a file of the two missing: named there
        raise ValueError(f"{path} is a folder, not a checkpoint; expected a checkpoint file such as "
                         f"{path / 'checkpoints' / 'last.safetensors'}, or a model folder ({CONFIG_NAME} and "
                         f"{WEIGHTS_NAME}, written by mode=export)")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if is_torch_file(path):
        original = convert_original_checkpoint(path)
        return Checkpoint(config=original.config, step=0, model=original.model, extra=original.extra,
                          path=original.path)
    return read_checkpoint(path)
