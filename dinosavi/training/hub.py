"""Models by name: a Hub-style folder (``config.json``, ``model.safetensors``, a ``README.md`` model card) that
``resume=`` loads from disk or, as ``hf://owner/name[@revision]``, from the Hugging Face Hub.

The folder::

    config.json         {"format": "dinosavi-pretrained/1", "step", "config": the run's resolved config,
                         "extra": what rebuilding needs (feature_dim, source), "model_keys": the version of
                         the weights' names (dinosavi.models.keys), "sha256": {tensor: digest}}
    model.safetensors   the model's weights only, named as in its state dict
    README.md           the model card: preset, encoder, training data, steps, the numbers measured

It holds what ``mode=eval``, ``mode=segment`` and ``mode=cache`` need to rebuild the model, and nothing of the
training state (optimizer, schedule, RNG): ``mode=train resume=<folder>`` stops with "holds weights only".
Every tensor is checked against its sha256 in ``config.json`` when loaded, as checkpoints are.

``hf://`` goes through ``huggingface_hub`` (the ``hub`` extra): its cache (``HF_HUB_CACHE``, ``HF_HOME``) and
offline mode (``HF_HUB_OFFLINE=1``: the cache only). When the package is missing, or the model is not cached
and cannot be downloaded, the error names the repository, the cache and how to get the model.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from dinosavi.atomic import atomic_path, write_atomic
from dinosavi.models.keys import MODEL_KEYS, upgrade_model_keys
from dinosavi.training.checkpoint import Checkpoint, tensor_digest

__all__ = ["CARD_NAME", "CONFIG_NAME", "HF_PREFIX", "PRETRAINED_FORMAT", "WEIGHTS_NAME", "collect_results", "download",
           "is_pretrained", "load_pretrained", "model_card", "parse_hf_uri", "push_to_hub", "save_pretrained"]

log = logging.getLogger(__name__)

PRETRAINED_FORMAT = "dinosavi-pretrained/1"
CONFIG_NAME, WEIGHTS_NAME, CARD_NAME = "config.json", "model.safetensors", "README.md"
HF_PREFIX = "hf://"
_TRAINING_STATE = ("epoch", "batch_in_epoch", "grad_scaler", "path")  # extra keys a shared model leaves out


def parse_hf_uri(uri: str) -> tuple[str, str | None]:
    """``hf://owner/name[@revision]`` -> ``(owner/name, revision or None)``.

    Raises:
        ValueError: not of that form.
    """
    if not uri.startswith(HF_PREFIX):
        raise ValueError(f"`{uri}` is not a Hub name; expected {HF_PREFIX}owner/name[@revision]")
    repo, _, revision = uri[len(HF_PREFIX):].partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or (revision == "" and uri.endswith("@")):
        raise ValueError(f"`{uri}` is not a Hub name; expected {HF_PREFIX}owner/name[@revision]")
    return repo, revision or None


def is_pretrained(path: str | Path) -> bool:
    """Whether ``path`` is a folder with ``config.json`` and ``model.safetensors``."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def save_pretrained(folder: str | Path, ckpt: Checkpoint, measured: Mapping[str, Mapping[str, float]] | None = None,
                    source: str | None = None, repo: str | None = None) -> Path:
    """Write a checkpoint's model as a Hub-style folder (weights, config, model card), each file atomically.

    Args:
        folder: the folder (made when missing; its three files are replaced).
        ckpt: a loaded checkpoint (its config must have ``preset``, ``model`` and ``encoder``).
        measured: numbers to state in the card: a label (e.g. the results file) -> metric name -> value.
        source: where the weights came from (named in the card).
        repo: the Hub repository (``owner/name``) the card's commands name; placeholders when None.

    Returns:
        The folder.

    Raises:
        ValueError: the checkpoint's config lacks a section a model is rebuilt from.
    """
    missing = [k for k in ("preset", "model", "encoder") if k not in ckpt.config]
    if missing:
        raise ValueError(f"{ckpt.path or 'the checkpoint'}: its config has no {missing}; it cannot be rebuilt by name")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in ckpt.model.items()}
    config = {**ckpt.config, "mode": "train", "resume": None}
    extra = {k: v for k, v in ckpt.extra.items() if k not in _TRAINING_STATE}
    meta = {"format": PRETRAINED_FORMAT, "step": ckpt.step, "config": config, "extra": extra, "model_keys": MODEL_KEYS,
            "sha256": {k: tensor_digest(t) for k, t in sorted(tensors.items())}}
    with atomic_path(folder / WEIGHTS_NAME, fsync=True) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})
    write_atomic(folder / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
    write_atomic(folder / CARD_NAME, model_card(config, ckpt.step, extra, measured or {}, source, repo))
    return folder


def load_pretrained(folder: str | Path) -> Checkpoint:
    """A Hub-style folder as a weights-only :class:`~dinosavi.training.checkpoint.Checkpoint` (config, step, weights).

    Raises:
        FileNotFoundError: the folder lacks ``config.json`` or ``model.safetensors``.
        ValueError: a ``config.json`` of another format, unreadable weights, or a tensor that is missing,
            extra or does not match its sha256 (named).
    """
    folder = Path(folder)
    if not is_pretrained(folder):
        raise FileNotFoundError(f"{folder} is not a model folder: expected {CONFIG_NAME} and {WEIGHTS_NAME} in it "
                                f"(written by mode=export)")
    try:
        meta = json.loads((folder / CONFIG_NAME).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{folder / CONFIG_NAME} is not JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != PRETRAINED_FORMAT:
        raise ValueError(f"{folder / CONFIG_NAME} is not a dinosavi model config (expected format "
                         f"{PRETRAINED_FORMAT!r})")
    try:
        with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{folder / WEIGHTS_NAME} is not a readable safetensors file: {e}") from e
    digests: dict[str, str] = meta.get("sha256", {})
    for name in sorted(set(tensors) | set(digests)):
        if name not in tensors or name not in digests:
            where = "missing from the weights" if name not in tensors else f"not listed in {CONFIG_NAME}"
            raise ValueError(f"{folder / WEIGHTS_NAME} is damaged: tensor `{name}` is {where}")
        if tensor_digest(tensors[name]) != digests[name]:
            raise ValueError(f"{folder / WEIGHTS_NAME} is damaged: tensor `{name}` does not match its sha256 in "
                             f"{CONFIG_NAME} (a changed byte)")
    model = upgrade_model_keys(tensors, meta.get("model_keys", 1), str(folder / CONFIG_NAME))
    return Checkpoint(config=meta["config"], step=int(meta["step"]), model=model, extra=dict(meta.get("extra", {})),
                      path=folder)


def _cache_dir() -> Path:
    """The Hugging Face cache as ``huggingface_hub`` resolves it, read from the environment now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _by_hand(repo: str, revision: str | None) -> str:
    tree = f"https://huggingface.co/{repo}" + (f"/tree/{revision}" if revision else "")
    return f"download {CONFIG_NAME} and {WEIGHTS_NAME} from {tree} into a folder and pass resume=<folder>"


def _how_to_get(repo: str, revision: str | None) -> str:
    at = f" --revision {revision}" if revision else ""
    return (f"get it while online with `hf download {repo}{at}` (huggingface_hub's CLI fills the cache), or "
            + _by_hand(repo, revision))


def download(uri: str) -> Path:
    """The local folder of ``hf://owner/name[@revision]``: from the Hugging Face cache, downloading what is missing
    unless ``HF_HUB_OFFLINE=1``.

    Raises:
        ImportError: ``huggingface_hub`` is not installed (says how to install it or get the files by hand).
        FileNotFoundError: the model is not cached and cannot be downloaded (offline, no network): names the
            repository, the revision, the cache and how to get the model.
        ValueError: a malformed name, or the Hub has no such repository or revision.
    """
    repo, revision = parse_hf_uri(uri)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
    except ImportError as e:
        raise ImportError(f"resume={uri} loads from the Hugging Face Hub, which needs huggingface_hub: "
                          f"pip install 'dinosavi[hub]'; or {_by_hand(repo, revision)}") from e
    cache, offline = _cache_dir(), _offline()
    try:
        path = snapshot_download(repo, revision=revision, cache_dir=cache, local_files_only=offline,
                                 allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise ValueError(f"resume={uri}: the Hub has no model {repo}" + (f" at revision {revision}" if revision else "")
                         + f" (or it is private: log in with `hf auth login`): {e}") from e
    except (LocalEntryNotFoundError, OSError) as e:
        why = ("HF_HUB_OFFLINE=1 forbids downloading it" if offline
               else "it could not be downloaded (no network?)")
        raise FileNotFoundError(f"resume={uri}: model {repo}" + (f"@{revision}" if revision else "")
                                + f" is not in the Hugging Face cache at {cache} and {why}; "
                                + _how_to_get(repo, revision)) from e
    folder = Path(str(path))
    if not is_pretrained(folder):
        raise ValueError(f"resume={uri}: {repo} has no {CONFIG_NAME} and {WEIGHTS_NAME}; is it a dinosavi model "
                         f"(made by mode=export)?")
    return folder


def push_to_hub(folder: str | Path, repo: str, revision: str | None = None, private: bool | None = None,
                message: str = "Upload dinosavi model") -> str:
    """Upload a model folder to the Hub repository ``repo`` (created when missing); returns the commit's URL.

    Raises:
        ImportError: ``huggingface_hub`` is not installed.
        FileNotFoundError: ``folder`` is not a model folder.
    """
    if not is_pretrained(folder):
        raise FileNotFoundError(f"{folder} is not a model folder: expected {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        from huggingface_hub import HfApi
    except ImportError as e:
        raise ImportError("export.push=true uploads with huggingface_hub: pip install 'dinosavi[hub]'") from e
    api = HfApi()
    api.create_repo(repo, private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=repo, folder_path=str(folder), revision=revision, commit_message=message,
                               allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    return str(getattr(commit, "commit_url", commit))


RESULT_FILES = ("metrics-*.json", "discovery-*.json", "anchor-*.json")


def _read_global(path: Path) -> dict[str, float]:
    payload = json.loads(path.read_text())
    values = payload.get("global", {}) if isinstance(payload, dict) else {}
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float)}


def _describe(path: Path, label: str, checkpoint: str | Path | None) -> str:
    """``label`` with what the evaluation beside it (its run's ``config.yaml``) scored: data, split, protocol.
    Warns when that evaluation was of another checkpoint than ``checkpoint``."""
    from omegaconf import OmegaConf

    config_file = path.parent / "config.yaml"  # an evaluation run's (mode=demo's evaluations have none of their own)
    if not config_file.is_file():
        return label
    cfg = OmegaConf.load(config_file)
    resume = OmegaConf.select(cfg, "resume")
    if checkpoint is not None and resume and str(resume) != str(checkpoint) and not (
            Path(str(resume)).exists() and Path(str(checkpoint)).exists()
            and Path(str(resume)).resolve() == Path(str(checkpoint)).resolve()):
        log.warning("%s evaluated resume=%s, not the exported %s; its numbers are stated anyway", path, resume,
                    checkpoint)
    data, protocol = OmegaConf.select(cfg, "data.name"), OmegaConf.select(cfg, "eval.protocol")
    lock_on = OmegaConf.select(cfg, "eval.lock_on")
    kind = f"eval={protocol}" + ("" if protocol not in (None, "dinosavi", "original") else
                                 (", lock-on" if lock_on else ", unsupervised"))
    return f"{label} (data={data}, {kind})" if data else label


def _last_of_run(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` is its run's last (``last.safetensors``, or the highest ``step-N``)."""
    if checkpoint.name == "last.safetensors":
        return True
    steps = sorted(p.name for p in checkpoint.parent.glob("step-*.safetensors"))
    return bool(steps) and steps[-1] == checkpoint.name


def collect_results(paths: list[str], checkpoint: str | Path | None = None) -> dict[str, dict[str, float]]:
    """The global numbers of evaluation results, for the model card: label (the file) -> metric -> value.

    Args:
        paths: results files (``metrics-*.json``, ``discovery-*.json``, ``anchor-*.json``) or folders searched
            for them (an evaluation's run directory).
        checkpoint: the exported checkpoint; when it is the last of a training run (``<run>/checkpoints/``), the
            results that run wrote under ``<run>`` (``mode=demo`` evaluates its final model there) are added.

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    found: dict[str, dict[str, float]] = {}

    def scan(root: Path, label_root: Path) -> None:
        for pattern in RESULT_FILES:
            for file in sorted(root.rglob(pattern)):
                found[_describe(file, str(file.relative_to(label_root)), checkpoint)] = _read_global(file)

    for text in paths:
        path = Path(text)
        if not path.exists():
            raise FileNotFoundError(f"export.results: {path} does not exist; expected a results JSON or an "
                                    f"evaluation's run directory")
        if path.is_file():
            found[_describe(path, path.name, checkpoint)] = _read_global(path)
        else:
            scan(path, path.parent)
    if checkpoint is not None and not str(checkpoint).startswith(HF_PREFIX):
        ckpt = Path(checkpoint)
        if ckpt.is_file() and ckpt.parent.name == "checkpoints" and _last_of_run(ckpt):
            scan(ckpt.parent.parent, ckpt.parent.parent)
    return {k: v for k, v in found.items() if v}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def model_card(config: Mapping[str, Any], step: int, extra: Mapping[str, Any],
               measured: Mapping[str, Mapping[str, float]], source: str | None = None, repo: str | None = None) -> str:
    """The ``README.md`` of a model folder: Hub metadata, then what the model is, how it was trained, the numbers
    measured with it (or that none were) and how to load it. Deterministic: the same inputs give the same text."""
    model, encoder = config.get("model", {}), config.get("encoder", {})
    data, train = config.get("data", {}), config.get("train", {})
    preset, encoder_name = config.get("preset", "?"), str(encoder.get("name", "?"))
    per_frame = model.get("predictor") == "none"
    kind = "DINOSAUR (slots bound per frame)" if per_frame else "DINOSAVi (slots carried through time)"
    data_name = data.get("name", "?")
    split = data.get("split") or "train"
    lines = [
        "---", "library_name: dinosavi", "tags:", "- video-object-segmentation", "- object-centric-learning",
        "- slot-attention", "---", "",
        f"# dinosavi `{preset}` on {data_name}", "",
        f"A {kind} slot model, trained without labels on frozen `{encoder_name}` features with the dinosavi "
        "package.", "",
        "| | |", "|---|---|",
        f"| preset | `{preset}` |",
        f"| encoder | `{encoder_name}`" + (f", stride {encoder.get('stride')}" if "efficientnet" in encoder_name
                                           else "") + " (frozen; its weights are not in this folder) |",
        f"| training data | `data={data_name}` split `{split}`, clips of {data.get('frames_per_clip', '?')} frames "
        f"at {train.get('input_size', '?')} (H, W) |",
        f"| steps | {step} of `train.max_steps={train.get('max_steps', '?')}`, batch {data.get('batch_size', '?')} |",
        f"| slots | {model.get('num_slots', '?')} x {model.get('slot_dim', '?')}, "
        f"predictor `{model.get('predictor', '?')}`, decoder `{model.get('decoder', '?')}` |",
        f"| seed | {config.get('seed', '?')} |",
    ]
    if extra.get("source"):
        lines.append(f"| converted from | {extra['source']} |")
    if source:
        lines.append(f"| exported from | `{Path(source).name}` |")
    lines += ["", "## Measured", ""]
    if measured:
        lines += [f"- `{label}`: " + ", ".join(f"{k} {_fmt(v)}" for k, v in values.items()) for label, values in
                  measured.items()]
    else:
        lines.append("No evaluation was recorded with this export: these weights come with no measured numbers.")
    name = repo or "<owner>/<name>"
    lines += ["", "## Use", "", "```bash",
              "pip install 'dinosavi[hub]'",
              f"python -m dinosavi mode=eval resume=hf://{name} data=davis data.root=<DAVIS>",
              f"python -m dinosavi mode=segment resume=hf://{name} input=<video>", "```", "",
              f"`resume=` also takes this folder on disk. `{CONFIG_NAME}` holds the full training config; "
              "the encoder's weights are fetched by its name as in training (`encoder.weights=<file>` for local ones).",
              ""]
    return "\n".join(lines)
