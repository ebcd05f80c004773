"""The front door's checks: every preset and mode passes them, every user-facing value out of range is one
error naming its key, the files a mode reads are named when wrong, and the CLI answers in well under a
second without importing torch. The allowed names equal the lower parts' own lists."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from omegaconf import OmegaConf

from dinosavi.cli import checks
from dinosavi.cli.checks import (
    DATASET_LAYOUTS,
    ENCODER_NAMES,
    ENCODER_PREFIXES,
    EVAL_PROTOCOLS,
    FEATURE_DTYPES,
    MODEL_CHOICES,
    MODEL_FOLDER_FILES,
    RESOLUTION_NAMES,
    ConfigError,
    ConfigFileNotFoundError,
    check_config,
)
from tests.cli.test_config import MODES, PRESETS
from tests.conftest import compose_config


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_passes(preset, tmp_path):
    check_config(compose_config("mode=train", f"hparam={preset}", "data=synthetic", f"data.root={tmp_path / 'new'}"))


@pytest.mark.parametrize("mode", sorted(set(MODES) - {"help"}))
def test_every_modes_defaults_pass_the_value_checks(mode):
    from dinosavi.cli.checks import _check_values

    _check_values(compose_config(f"mode={mode}"))


# (overrides, the message: it names the key and says what was expected)
BAD_VALUES = {
    "device": (("device=gpu",), r"device=gpu: expected auto, cpu, cuda or cuda:<index>"),
    "method": (("method=propogate",), r"Unknown method `propogate`; expected one of \('slots', 'propagate'\)"),
    "batch": (("data.batch_size=-3",), r"data\.batch_size=-3: expected an integer >= 1"),
    "workers": (("data.num_workers=-1",), r"data\.num_workers=-1: expected an integer >= 0"),
    "frame-rate": (("data.frame_rate=0",), r"data\.frame_rate=0\.0: expected a positive number"),
    "bad-fraction": (("data.max_bad_fraction=2",), r"data\.max_bad_fraction must lie in \[0, 1\], got 2"),
    "dataset": (("data.name=kinetics",), r"Unknown dataset `kinetics` \(data\.name\)"),
    "heldout": (("data.heldout_videos=-1",), r"data\.heldout_videos=-1: expected an integer >= 0"),
    "range": (("data.start=3", "data.stop=2"), r"data\.start=3, data\.stop=2: expected 0 <= start < stop"),
    "synthetic": (("data.synthetic.val_videos=0",), r"data\.synthetic: SyntheticSpec: expected 1 <= val_videos"),
    "encoder": (("encoder.name=vit_huge_dream",), r"Unknown encoder `vit_huge_dream` \(encoder\.name\)"),
    "stride": (("encoder.stride=4",), r"encoder\.stride=4: expected one of \(8, 16\)"),
    "precision": (("encoder.precision=fp8",), r"Unknown encoder\.precision `fp8`"),
    "dtype": (("features.dtype=bf16",), r"features\.dtype=bf16: expected one of \('fp16', 'fp32'\)"),
    "resolutions": (("features.resolutions=[test]",), r"Unknown features\.resolutions \['test'\]"),
    "no-resolutions": (("features.resolutions=[]",), r"Unknown features\.resolutions \[\]; expected a non-empty"),
    "decoder": (("model.decoder=conv",), r"Unknown model\.decoder `conv`"),
    "slots": (("model.num_slots=0",), r"model\.num_slots=0: expected a positive integer"),
    "slot-groups": (("model.num_slots=[2,3]",), r"model\.num_slots=\[2, 3\] with model\.bgfg=False"),
    "condition": (("model.condition=boxes",), r"Unknown model\.condition `boxes`"),
    "condition-share": (("model.condition_share=1.5",), r"model\.condition_share=1\.5: expected a number in \[0, 1\]"),
    "track": (("model.track_weight=-1",), r"model\.track_weight=-1\.0: expected a weight >= 0"),
    "lock-init": (("eval.lock_init=boxes",), r"Unknown eval\.lock_init `boxes`"),
    "fuse": (("eval.fuse=2",), r"eval\.locality must be >= 0 and eval\.anchor, eval\.fuse in \[0, 1\]"),
    "demo-fuse": (("demo.fuse=2",), r"demo\.fuse=2\.0: expected a number in \[0, 1\]"),
    "warm-up": (("train.pct_start=2",), r"train\.lr must be positive and train\.pct_start in \[0, 1\]"),
    "steps": (("train.max_steps=0",), r"train\.max_steps, save_every and log_every must be >= 1"),
    "compile": (("train.compile=''",), r"train\.compile must be null \(eager\) or a torch\.compile backend"),
    "eval-protocol": (("eval.protocol=videosaurus",), r"Unknown eval\.protocol `videosaurus`; expected one of "
                      r"\('dinosavi', 'original', 'videosaur', 'slotcontrast'\)"),
    "output": (("eval.output=bogus",), r"Unknown eval\.output `bogus`"),
    "short-side": (("eval.short_side=0",), r"eval\.short_side=0: expected an integer >= 1 or null"),
    "task": (("score.task=both",), r"^Unknown score\.task `both` \(the DAVIS task\); expected one of "
                 r"\['semi', 'unsupervised'\]"),
    "topk": (("propagate.topk=0",), r"propagate: topk and chunk_elements must be >= 1"),
    "chunk": (("segment.chunk_frames=0",), r"segment\.chunk_frames=0: expected an integer >= 1"),
    "fps": (("segment.max_fps=0",), r"segment\.max_fps=0\.0: expected a positive number"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_bad_value_is_one_error_naming_its_key(case, tmp_path):
    overrides, message = BAD_VALUES[case]
    cfg = compose_config("mode=train", "hparam=demo", "data=synthetic", f"data.root={tmp_path / 'new'}", *overrides)
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A dinosavi checkpoint, one saved without its config, and a file that is no checkpoint."""
    from dinosavi.cli.build import build_encoder
    from dinosavi.models.factory import build_model
    from dinosavi.training.checkpoint import save_checkpoint

    base = tmp_path_factory.mktemp("checkpoints")
    cfg = compose_config("mode=train", "hparam=demo", "encoder=vit_tiny_random")
    model = build_model(cfg.model, build_encoder(cfg.encoder).feature_dim)
    good = save_checkpoint(base / "run" / "checkpoints" / "last.safetensors", model,
                           OmegaConf.to_container(cfg, resolve=True), 0)  # type: ignore[arg-type]
    bare = save_checkpoint(base / "bare.safetensors", model, {}, 0)
    (base / "notes.txt").write_text("not a checkpoint, and longer than eight bytes")
    return good, bare, base / "notes.txt", base / "run"


def test_the_files_a_mode_reads_are_named(checkpoints, tiny_synthetic, tmp_path):
    good, bare, notes, run = checkpoints
    data = ("data=synthetic", f"data.root={tiny_synthetic}")
    check_config(compose_config("mode=eval", f"resume={good}", *data))
    cases = [
        ((f"resume={run}",), ConfigError, rf"resume={run} is a folder, not a checkpoint; .* it holds {good}"),
        ((f"resume={notes}",), ConfigError, rf"{notes} is not a readable safetensors checkpoint \(resume=\)"),
        ((f"resume={bare}",), ConfigError, rf"{bare} holds no `preset` section .* saved without its config"),
        ((f"resume={tmp_path / 'gone.safetensors'}",), ConfigFileNotFoundError, r"checkpoint not found: .*gone"),
        ((f"resume={good}", "data.split=tset"), ConfigFileNotFoundError,
         r"Split file not found: .*tset\.txt \(data\.split=tset\); the splits of .*: train, val"),
        ((f"resume={good}", "data.sequences=[synth-0000]"), ConfigError,
         r"data\.sequences: synth-0000 not in split val .*; it holds synth-0003"),
        (("encoder.weights=/nonexistent/vit.safetensors",), ConfigFileNotFoundError,
         r"encoder\.weights=/nonexistent/vit\.safetensors does not exist"),
    ]
    for overrides, kind, message in cases:
        with pytest.raises(kind, match=message):
            check_config(compose_config("mode=eval", *data, *overrides))
    with pytest.raises(ConfigFileNotFoundError, match=r"data\.root=/nonexistent is not a folder \(data=davis\)"):
        check_config(compose_config("mode=propagate", "data.root=/nonexistent"))
    with pytest.raises(ConfigError, match=r"results=.*notes\.txt is a file; expected a folder"):
        check_config(compose_config("mode=score", f"results={notes}", *data))
    with pytest.raises(ConfigError, match=r"first_mask=.* is a folder; expected the palette PNG"):
        check_config(compose_config("mode=segment", "method=propagate", f"input={tiny_synthetic}",
                                    f"first_mask={tiny_synthetic}"))
    with pytest.raises(ConfigError, match=r"mode=train reads whole splits"):
        check_config(compose_config("mode=train", *data, "data.sequences=[synth-0000]"))


def test_resume_takes_a_model_folder_or_a_hub_name_and_export_its_inputs(checkpoints, tiny_synthetic, tmp_path):
    """mode=export's folders and hf:// names pass where a checkpoint does, weights only (not mode=train); a folder
    with one of the two files is named for what it lacks; mode=export's own inputs are checked."""
    from dinosavi.training.hub import save_pretrained
    from dinosavi.training.loading import load_checkpoint

    good, _, _, run = checkpoints
    folder = save_pretrained(tmp_path / "my-model", load_checkpoint(good))
    data = ("data=synthetic", f"data.root={tiny_synthetic}")
    for resume in (folder, "hf://owner/name", "hf://owner/name@v1.0"):
        check_config(compose_config("mode=eval", f"resume={resume}", *data))
    check_config(compose_config("mode=export", f"resume={folder}", f"export.results=[{run}]"))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    foreign = tmp_path / "transformers-model"  # a Hub folder of another library
    foreign.mkdir()
    (foreign / "config.json").write_text('{"model_type": "vit"}')
    (foreign / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    cases = [
        (("mode=eval", f"resume={partial}", *data), ConfigFileNotFoundError,
         rf"resume={partial} is not a model folder: config\.json missing"),
        (("mode=eval", f"resume={foreign}", *data), ConfigError,
         r"config\.json is not a dinosavi model config \(resume=; expected format 'dinosavi-pretrained/1'"),
        (("mode=eval", "resume=hf://owner", *data), ConfigError, r"resume=hf://owner is not a Hub name"),
        (("mode=train", f"resume={folder}"), ConfigError, r"is a model folder \(mode=export\), which holds weights "
         r"only .* mode=train cannot continue it"),
        (("mode=train", "resume=hf://owner/name"), ConfigError, r"is a model on the Hub, which holds weights only"),
        (("mode=export",), ConfigError, r"mode=export needs resume=<checkpoint\.safetensors>"),
        (("mode=export", f"resume={good}", "export.push=true"), ConfigError,
         r"export\.push=true needs export\.repo=<owner/name>"),
        (("mode=export", f"resume={good}", f"export.results=[{tmp_path / 'gone'}]"), ConfigFileNotFoundError,
         r"export\.results=.*gone does not exist"),
        (("mode=eval", f"resume={good}", "data=ytvis", "data.root=/nonexistent"), ConfigFileNotFoundError,
         r"data\.root=/nonexistent is not a folder \(data=ytvis\); expected a YouTube-VIS"),
    ]
    for overrides, kind, message in cases:
        with pytest.raises(kind, match=message):
            check_config(compose_config(*overrides))


def test_the_allowed_names_are_the_parts_own():
    from dinosavi.cli.build import DATASETS
    from dinosavi.encoders.registry import ENCODERS
    from dinosavi.features.space import RESOLUTIONS
    from dinosavi.features.store import DTYPES
    from dinosavi.models.background import BGFG_STRATEGIES
    from dinosavi.models.decoders import DECODERS
    from dinosavi.models.frame import BLENDS, INPUT_PES, STYLES
    from dinosavi.models.pos_embed import PE_TYPES
    from dinosavi.models.predictor import PREDICTORS, TIME_DECODERS
    from dinosavi.models.slot_model import CONDITIONS, LOSS_NORMS

    assert set(DATASET_LAYOUTS) == set(DATASETS)
    assert set(ENCODER_NAMES) | {p + "<" for p in ENCODER_PREFIXES} == {e.split("<")[0] + ("<" if "<" in e else "")
                                                                        for e in ENCODERS}
    assert MODEL_CHOICES == {"decoder": DECODERS, "predictor": PREDICTORS, "time_decoder": TIME_DECODERS,
                             "pe_type": PE_TYPES, "input_pe": INPUT_PES, "blend": BLENDS, "loss_norm": LOSS_NORMS,
                             "style": STYLES, "bgfg_strategy": BGFG_STRATEGIES, "condition": CONDITIONS}
    assert set(FEATURE_DTYPES) == set(DTYPES) and RESOLUTION_NAMES == RESOLUTIONS
    from dinosavi.cli.help import CONF_DIR
    from dinosavi.evaluation.anchors import ANCHOR_PROTOCOLS
    from dinosavi.training.hub import CONFIG_NAME, HF_PREFIX, PRETRAINED_FORMAT, WEIGHTS_NAME, parse_hf_uri

    assert set(EVAL_PROTOCOLS) == {p.stem for p in (CONF_DIR / "eval").glob("*.yaml")} and set(ANCHOR_PROTOCOLS) < set(
        EVAL_PROTOCOLS)
    assert MODEL_FOLDER_FILES == (CONFIG_NAME, WEIGHTS_NAME) and checks.MODEL_FOLDER_FORMAT == PRETRAINED_FORMAT
    assert checks.HF_PREFIX == HF_PREFIX
    for uri in ("hf://owner/name", "hf://owner/name@v1.0", "hf://o/n@refs/pr/1", "hf://name", "hf://a/b/c",
                "hf://owner/", "hf://owner/name@", "hf:///name", "hf://a@b/c"):
        try:
            parse_hf_uri(uri)
            parsed = True
        except ValueError:
            parsed = False
        assert bool(checks._HF_URI.fullmatch(uri)) == parsed, uri


def test_the_cli_answers_in_well_under_a_second_without_torch_or_a_traceback(tmp_path):
    """The three mistakes of the issue: each used to fail after seconds of imports, with a traceback, after
    generating data and trying the hub."""
    probe = ("import runpy, sys, time\n"
             "t0 = time.perf_counter()\n"
             "sys.argv = ['dinosavi', *sys.argv[1:]]\n"
             "try:\n"
             "    runpy.run_module('dinosavi', run_name='__main__')\n"
             "except SystemExit as exit:\n"
             "    print('exit', exit.code, f'{time.perf_counter() - t0:.2f} s')\n"
             "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n")
    for args, named in ((("mode=train", "method=propogate"), "method"), (("mode=train", "device=gpu"), "device=gpu"),
                        (("mode=train", "data.batch_size=-3"), "data.batch_size=-3")):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", probe, *args, f"hydra.run.dir={tmp_path / 'run'}"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        seconds = time.perf_counter() - t0
        assert "exit 2" in out.stdout and "torch not imported" in out.stdout, out.stdout + out.stderr
        assert named in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert not (tmp_path / "data").exists()  # no synthetic set generated first
        assert seconds < 10, seconds  # about 0.5 s on 2 cores; generous for a loaded CI machine
