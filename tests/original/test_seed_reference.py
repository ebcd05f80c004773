"""The proof of faithfulness: both original checkpoints of ``../shared/seed-reference`` load, and from the
stored inputs and slot noise this package computes every intermediate the original computed (training path
and evaluation path) within the tolerances of the reference's README.

The bg/fg checkpoint has its LayerNorms and attention biases perturbed, so a tensor mapped to the wrong place
changes some output here (``test_a_misplaced_tensor_fails`` swaps same-shaped pairs of them to show it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from einops import rearrange
from safetensors.torch import load_file
from torch import Tensor

import dinosavi.models.decoders as decoders
from dinosavi.evaluation.options import EvalOptions
from dinosavi.evaluation.vos import segment_sequence
from dinosavi.models.background import background_mask
from dinosavi.models.options import ModelConfig
from dinosavi.models.slot_model import SlotModel
from dinosavi.training.loading import load_checkpoint

TAGS = ("headline", "bgfg")
PRESETS = {"headline": "slot-s256d-line-t01-tline-ini5", "bgfg": "slot-s256d-final"}
EXACT = ("bg_mask", "slot_mask", "target_index")
ATTENTION_LIKE = ("train.attn", "weights", "updates", "eval.attn", "eval.slot_preds", "train.alpha",
                  "train.alpha_logits", "eval.alpha_preds", "train.recon")


def tolerance(name: str) -> tuple[float, float] | None:
    """(atol, rtol) of the reference README for an output name (without the tag); None: exact."""
    if name.endswith(EXACT):
        return None
    if name in ("loss", "loss_t0", "loss_t1"):
        return 0.0, 1e-5
    if name in ATTENTION_LIKE or name.endswith((".weights", ".updates")):
        return 1e-5, 1e-4
    return 1e-4, 1e-4


@pytest.fixture(scope="module")
def reference(seed_reference: Path) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    return load_file(str(seed_reference / "inputs.safetensors")), load_file(str(seed_reference / "outputs.safetensors"))


def load_model(seed_reference: Path, tag: str) -> SlotModel:
    from omegaconf import OmegaConf

    from dinosavi.models.factory import build_model

    ckpt = load_checkpoint(seed_reference / f"{tag}.ckpt")
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), ckpt.config["model"])
    model = build_model(cfg, 384)  # type: ignore[arg-type]
    model.load_state_dict(ckpt.model, strict=True)
    return model.eval()


@contextmanager
def fixed_noise(model: SlotModel, noise: Tensor) -> Iterator[None]:
    """Slot initialisation from the stored noise instead of random draws (the formula still runs)."""
    init = model.frame.slot_init

    def forward(batch_size: int, num_slots: Any, generator: torch.Generator | None = None) -> Tensor:
        return init.from_noise(noise[:batch_size], num_slots)

    init.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        del init.forward


class Recorder:
    """Forward hooks that record what the reference stores, from this package's modules."""

    def __init__(self, model: SlotModel) -> None:
        self.model = model
        self.frames: list[dict[str, Any]] = []
        self.store: dict[str, list[Tensor]] = {}
        self.active = True
        sa = model.frame.slot_attention
        self.handles = [
            sa.register_forward_pre_hook(self._frame),
            sa.register_forward_hook(self._frame_out),
            sa.norm_slots.register_forward_pre_hook(lambda m, a: self._iter({"slots_in": a[0]})),
            sa.project_q.register_forward_hook(lambda m, a, o: self._set("q", o)),
            sa.gru.register_forward_hook(self._gru),
            sa.mlp.register_forward_hook(lambda m, a, o: self._set("slots_out", self._cur()["gru_out"] + o)),
            model.frame.decoder.register_forward_pre_hook(lambda m, a: self._add("decoder_in", a[0])),
            model.frame.decoder.register_forward_hook(lambda m, a, o: self._add("decoder_out", o)),
        ]
        if model.predictor is not None:
            self.handles += [
                model.predictor.register_forward_pre_hook(lambda m, a: self._add("pred_in", a[0])),
                model.predictor.register_forward_hook(lambda m, a, o: self._add("pred_out", o)),
                model.predictor.norm_attn.register_forward_hook(lambda m, a, o: self._add("pred_ln_attn", o)),
            ]
        for i, td in enumerate(model.time_decoders):
            self.handles.append(td.register_forward_hook(lambda m, a, o, i=i: self._add(f"time_dec.p{i}", o)))
        if model.prediction_norm is not None:
            self.handles.append(model.prediction_norm.register_forward_hook(lambda m, a, o: self._add("pred_ln", o)))

    def _cur(self) -> dict[str, Any]:
        return self.frames[-1]["iters"][-1]

    def _frame(self, module: Any, args: tuple[Any, ...]) -> None:
        if self.active:
            x, slots, num_iters, mask = args
            self.frames.append({"x": x, "start": slots, "num_iters": num_iters, "mask": mask, "iters": []})

    def _frame_out(self, module: Any, args: Any, out: Any) -> None:
        if self.active:
            self.frames[-1]["out"] = out

    def _iter(self, entry: dict[str, Tensor]) -> None:
        if self.active:
            self.frames[-1]["iters"].append(entry)

    def _set(self, key: str, value: Tensor) -> None:
        if self.active:
            self._cur()[key] = value

    def _gru(self, module: Any, args: tuple[Tensor, ...], out: Tensor) -> None:
        if self.active:
            shape = self._cur()["slots_in"].shape
            self._cur()["updates"] = args[0].view(shape)
            self._cur()["gru_out"] = out.view(shape)

    def _add(self, key: str, value: Any) -> None:
        if self.active:
            self.store.setdefault(key, []).append(value)

    def iteration_weights(self, frame: dict[str, Any], k: int) -> Tensor:
        """Attention of iteration ``k`` of a recorded frame: the last attention of ``k + 1`` iterations."""
        self.active = False
        try:
            return self.model.frame.slot_attention(frame["x"], frame["start"], k + 1, frame["mask"]).attention
        finally:
            self.active = True

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def training_path(model: SlotModel, inputs: dict[str, Tensor], monkeypatch: pytest.MonkeyPatch) -> dict[str, Tensor]:
    feats, cls = inputs["feats"], inputs["cls_attns"]
    T, (h, w) = feats.shape[1], feats.shape[-2:]
    logits: list[Tensor] = []
    blend = decoders._blend

    def capture(x: Tensor, size: tuple[int, int], weights: Tensor | None) -> decoders.DecoderOutput:
        logits.append(rearrange(x[..., -1], "b s (h w) -> b s h w", h=size[0]))
        return blend(x, size, weights)

    monkeypatch.setattr(decoders, "_blend", capture)
    rec = Recorder(model)
    try:
        with torch.no_grad(), fixed_noise(model, inputs["slot_noise"]):
            result = model.clip_loss(feats, cls)
        out: dict[str, Tensor] = {"loss": result.loss}
        for i, k in enumerate(model.time_steps):
            out[f"loss_t{i}"] = result.logs[f"loss/t+{k}"].double()
        bound = T - max(model.time_steps)
        assert len(rec.frames) == bound
        out["init_slots"] = rec.frames[0]["start"]
        out["train.slots"] = torch.stack([f["out"].slots for f in rec.frames])
        out["train.attn"] = torch.stack([f["out"].attention for f in rec.frames])
        for t, frame in enumerate(rec.frames):
            assert len(frame["iters"]) == frame["num_iters"]
            for k, it in enumerate(frame["iters"]):
                for name in ("slots_in", "q", "updates", "gru_out", "slots_out"):
                    out[f"train.f{t}.it{k}.{name}"] = it[name]
                out[f"train.f{t}.it{k}.weights"] = rec.iteration_weights(frame, k)
            if t:
                for name in ("pred_in", "pred_ln_attn", "pred_out"):
                    out[f"train.f{t}.{name}"] = rec.store[name][t - 1]
        if model.bgfg_strategy is not None:
            out["train.slot_mask"] = torch.stack([f["mask"] for f in rec.frames])
            background = background_mask(rearrange(cls[:, :bound], "b t n h w -> (b t) n h w"))
            out["train.bg_mask"] = rearrange(background, "(b t) h w -> t b h w", b=feats.shape[0])
        for i in range(len(model.time_steps)):
            out[f"train.time_dec.p{i}"] = rec.store[f"time_dec.p{i}"][0]
        out["train.decoder_in"] = rec.store["decoder_in"][0]
        decoded = rec.store["decoder_out"][0]
        out["train.recon"], out["train.alpha"] = decoded.reconstruction, decoded.alpha
        out["train.alpha_logits"] = logits[0]
        pred_ln = rearrange(rec.store["pred_ln"][0], "p b t h w d -> p t (b h w) d")
        out["train.pred_ln_head"] = pred_ln[:, :, :16]
        index = torch.tensor([[t + k for k in model.time_steps] for t in range(bound)])
        out["train.target_index"] = index
        target = rearrange(feats[:, index], "b t p d h w -> p t (b h w) d")
        out["train.pixel_sqerr"] = rearrange((pred_ln - target).square().mean(-1), "p t (b h w) -> p t b h w",
                                             h=h, w=w)
    finally:
        rec.close()
    return out


def evaluation_path(model: SlotModel, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """The original's ``eval_slot.py`` on the clip without lock-on: bg/fg models restrict their background
    slots to each frame's CLS-attention background (our ``eval.background_mask=every_frame``)."""
    feats, cls = inputs["feats"][0], inputs["cls_attns"][0]  # (T, D, h, w), (T, heads, h, w)
    backgrounds = background_mask(cls)
    grouped = model.bgfg_strategy is not None
    out: dict[str, Tensor] = {}
    for output in ("slot", "alpha"):
        rec = Recorder(model)
        try:
            with fixed_noise(model, inputs["slot_noise"]):
                result = segment_sequence(
                    model, feats, None, EvalOptions(lock_on=False, output=output, track_mode=None),
                    size=tuple(feats.shape[-2:]), background=backgrounds[0] if grouped else None,
                    later_backgrounds=iter(backgrounds[1:]) if grouped else None,
                )
        finally:
            rec.close()
        out[f"eval.{output}_preds"] = result.masks
        if output == "slot":
            out["eval.slots"] = torch.stack([f["out"].slots for f in rec.frames])
            out["eval.attn"] = torch.stack([f["out"].attention for f in rec.frames])
            if grouped:
                out["eval.bg_mask"] = backgrounds
                out["eval.slot_mask"] = torch.cat([f["mask"] for f in rec.frames])
    return out


def compare(ours: dict[str, Tensor], reference: dict[str, Tensor], tag: str) -> list[str]:
    """Every reference output of ``tag`` against ours; returns the failures (empty when all match)."""
    failures = []
    names = sorted(k.removeprefix(f"{tag}.") for k in reference if k.startswith(f"{tag}."))
    for name in names:
        expected = reference[f"{tag}.{name}"]
        if name not in ours:
            failures.append(f"{name}: not computed")
            continue
        actual = ours[name].detach().reshape(expected.shape) if ours[name].numel() == expected.numel() else ours[name]
        tol = tolerance(name)
        try:
            if tol is None:
                assert actual.shape == expected.shape and torch.equal(actual.to(expected.dtype), expected)
            else:
                torch.testing.assert_close(actual.to(expected.dtype), expected, atol=tol[0], rtol=tol[1])
        except AssertionError as e:
            failures.append(f"{name}: {str(e).splitlines()[0] if str(e) else 'differs'}")
    return failures


@pytest.mark.parametrize("tag", TAGS)
def test_every_intermediate_matches_the_original(tag, seed_reference, reference, monkeypatch):
    inputs, outputs = reference
    model = load_model(seed_reference, tag)
    ours = training_path(model, inputs, monkeypatch) | evaluation_path(model, inputs)
    names = {k.removeprefix(f"{tag}.") for k in outputs if k.startswith(f"{tag}.")}
    assert len(names) > 40  # the README's list: nothing is skipped silently
    failures = compare(ours, outputs, tag)
    assert not failures, f"{tag}: {len(failures)} of {len(names)} outputs differ:\n" + "\n".join(failures)
    torch.testing.assert_close(ours["init_slots"], inputs[f"{tag}.init_slots"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("tag", TAGS)
def test_checkpoint_reports_its_preset(tag, seed_reference):
    ckpt = load_checkpoint(seed_reference / f"{tag}.ckpt")
    assert ckpt.config["preset"] == PRESETS[tag]
    assert ckpt.optimizer is None and ckpt.step == 0


# Pairs of same-shaped tensors, each holding one of the tensors the reference perturbed (constant at random
# init, so only the bg/fg checkpoint tells them apart); every swap must show in the outputs.
SWAPS = (
    ("frame.slot_attention.norm_inputs.weight", "prediction_norm.weight"),
    ("frame.slot_attention.norm_slots.bias", "frame.slot_attention.norm_mlp.bias"),
    ("predictor.norm_attn.weight", "predictor.norm_mlp.weight"),
    ("predictor.attn.out_proj.bias", "predictor.mlp.bias"),
    ("time_decoders.0.layer.bias", "time_decoders.1.layer.bias"),
)


@pytest.mark.parametrize(("a", "b"), SWAPS)
def test_a_misplaced_tensor_fails(a, b, seed_reference, reference, monkeypatch):
    inputs, outputs = reference
    model = load_model(seed_reference, "bgfg")
    state = model.state_dict()
    assert state[a].shape == state[b].shape and not torch.equal(state[a], state[b])
    model.load_state_dict(dict(state, **{a: state[b], b: state[a]}), strict=True)
    failures = compare(training_path(model, inputs, monkeypatch), outputs, "bgfg")
    assert [f for f in failures if "not computed" not in f], f"swapping {a} and {b} went unnoticed"
