"""The typed options of evaluation: how slots bind and are read out, how results are scored, how labels
propagate.

Plain dataclasses with no heavy imports: the config schema (:mod:`dinosavi.cli.config`) is made of them,
and the front door turns the composed config into them (``OmegaConf.to_object``), so a value has one
source and a bad one fails before any model is built. Called from Python, construct them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["BACKGROUND_MASKS", "BACKGROUND_REGIONS", "LABEL_SAMPLINGS", "LOCK_INITS", "METHODS", "OUTPUTS",
           "SCORE_TASKS", "TRACKERS", "TRACK_MODES", "EvalOptions", "PropagationParams", "ScoreOptions",
           "slot_count"]

BACKGROUND_MASKS = ("first_frame", "every_frame")
LABEL_SAMPLINGS = ("area", "nearest")
OUTPUTS = ("alpha", "slot")
TRACKERS = ("overlap", "slotsim")  # the trackers of dinosavi/evaluation/tracking.py
TRACK_MODES = ("auto", None, *TRACKERS)  # eval.track_mode: auto (by model), null (none) or a tracker
LOCK_INITS = ("auto", "random", "mask", "assign")
BACKGROUND_REGIONS = ("shared", "kmeans")
SCORE_TASKS = ("semi", "unsupervised")  # the DAVIS tasks mode=score scores (the score.task key)
METHODS = ("slots", "propagate")  # mode=segment's method=: a slot model, or label propagation


def slot_count(value: Any) -> int | list[int]:
    """``eval.num_slots`` as an int or a ``[bg, fg]`` list.

    Raises:
        ValueError: neither a positive int nor two positive ints.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return [int(v) for v in value]
    raise ValueError(f"eval.num_slots must be a positive integer or [bg, fg], got {value}")


@dataclass
class EvalOptions:
    """Evaluation of a slot model: first-frame lock-on (semi-supervised) or unsupervised.

    ``lock_on``: true gives each first-frame object ``slots_per_class`` slots, the background
    ``num_bg_slots`` and unannotated foreground (CLS attention, needs a ViT) ``num_extra_slots``; scored
    by the DAVIS semi-supervised task. false: ``num_slots`` slots (the model's when None; ``[bg, fg]``
    with slot groups) bind freely and every slot is a segment; scored by the DAVIS unsupervised task
    (Hungarian matching on J&F, at most ``score.max_proposals`` segments) plus FG-ARI, mBO and mIoU.
    ``short_side`` resizes frames (long side to a multiple of the encoder stride) before encoding; null keeps
    the native resolution (cropped to a multiple of the stride, as the original DINOSAVi's ViT did).
    ``output`` picks the masks: ``alpha`` (decoder) or ``slot`` (slot-attention weights).
    ``background_mask``: ``first_frame`` restricts slots only at the first frame (lock-on); ``every_frame``
    also restricts the background slots to each later frame's CLS-attention background, the others
    unrestricted (the original's; needs a ViT). ``label_sampling``: ``area`` gives each patch the majority
    id of its pixels (every present object keeps a patch); ``nearest`` samples one pixel per patch (the
    original's; objects it misses get no slots). ``protocol`` names the ``eval=`` group that set these;
    ``videosaur`` and ``slotcontrast`` make ``mode=eval`` score by the anchors' protocol
    (:mod:`dinosavi.evaluation.anchors`), and an exported model card states it.
    ``num_iters``/``ini_iters`` None use the model's iterations (``ini_iters`` at the first frame).
    With background/foreground slot groups the ``num_bg_slots`` come from the background group.
    ``track_mode`` (``auto``, null, ``overlap``, ``slotsim``) re-orders slots frame to frame by the soft
    IoU of their masks or the cosine similarity of slots, softmaxed with ``track_temperature``; ``auto``
    tracks per-frame models (fresh slots every frame) by ``overlap`` and leaves models that carry their
    slots as they are. ``overlays``, ``videos``, ``report``: which outputs are written besides the PNGs.

    Lock-on's first frame and its aids (each measured in ``benchmarks/RESULTS.md``; without lock-on the slots
    follow the model's own loop and these are not read): ``lock_init`` ``random``
    draws the slots and restricts their attention to their masks at frame 0; ``mask`` gives the masks to the
    model's conditioned initialiser (``model.condition``; ``auto``: ``mask`` when the model has one); ``assign``
    binds ``num_slots`` slots freely (the model's when None) and gives each slot the first-frame class its
    frame-0 region overlaps best (IoU): lock-on by assignment, a baseline.
    ``bg_regions`` ``shared`` lets every background slot attend to the whole background at frame 0; ``kmeans``
    splits each region that several slots share (the background's; an object's with ``slots_per_class`` > 1)
    into one k-means region of the frame's features per slot, as training's pseudo-masks split whole frames.
    ``locality`` > 0 restricts every carried slot to within that many patches of what it won at the previous
    frame; ``exclusion`` keeps the background slots off the patches the object slots won at the previous
    frame; ``anchor`` in [0, 1] pulls each frame's initial slots toward the first frame's (None: the model's;
    :meth:`dinosavi.models.slot_model.SlotModel.scan`). ``fuse`` in [0, 1] mixes the slots' class scores with
    label propagation's soft labels on the same features (0: slots alone; a fusion, reported as such).

    Raises:
        ValueError: an unknown ``output``, ``background_mask``, ``label_sampling``, ``track_mode``, ``lock_init``
            or ``bg_regions``, a ``num_slots`` that is neither a positive int nor ``[bg, fg]``, a negative
            ``locality``, or ``anchor``/``fuse`` outside [0, 1].
    """

    protocol: str = "dinosavi"
    lock_on: bool = True
    short_side: int | None = 224
    num_bg_slots: int = 4
    slots_per_class: int = 1
    num_extra_slots: int = 0
    num_slots: Any = None
    output: str = "alpha"
    background_mask: str = "first_frame"
    label_sampling: str = "area"
    num_iters: int | None = None
    ini_iters: int | None = None
    track_mode: str | None = "auto"
    track_temperature: float = 0.1
    lock_init: str = "auto"
    bg_regions: str = "shared"
    locality: int = 0
    anchor: float | None = None
    exclusion: bool = False
    fuse: float = 0.0
    overlays: bool = True
    videos: bool = True
    report: bool = True

    def __post_init__(self) -> None:
        for key, value, allowed in (("output", self.output, OUTPUTS),
                                    ("background_mask", self.background_mask, BACKGROUND_MASKS),
                                    ("label_sampling", self.label_sampling, LABEL_SAMPLINGS),
                                    ("track_mode", self.track_mode, TRACK_MODES),
                                    ("lock_init", self.lock_init, LOCK_INITS),
                                    ("bg_regions", self.bg_regions, BACKGROUND_REGIONS)):
            if value not in allowed:
                raise ValueError(f"Unknown eval.{key} `{value}`; expected one of {allowed}")
        anchor = 0.0 if self.anchor is None else self.anchor
        if self.locality < 0 or not 0.0 <= anchor <= 1.0 or not 0.0 <= self.fuse <= 1.0:
            raise ValueError(f"eval.locality must be >= 0 and eval.anchor, eval.fuse in [0, 1]; got "
                             f"{self.locality}, {self.anchor}, {self.fuse}")
        if self.num_slots is not None:
            self.num_slots = slot_count(self.num_slots)
        if self.lock_on and self.num_slots is not None and self.lock_init != "assign":
            raise ValueError("eval.num_slots applies to lock_on=false and lock_init=assign; lock-on uses "
                             "num_bg_slots + slots_per_class x objects + num_extra_slots slots")

    @property
    def every_frame_background(self) -> bool:
        """Whether the background slots are restricted to each later frame's CLS-attention background."""
        return self.background_mask == "every_frame"


@dataclass
class ScoreOptions:
    """``mode=score``: ``task``, the DAVIS task scored (the official toolkit's ``--task``): ``semi`` (first-frame
    objects) or ``unsupervised`` (ids are proposals, at most ``max_proposals``, Hungarian-matched to the objects on
    J&F). ``workers``: sequences scored at once, in threads (0: one per core).

    Raises:
        ValueError: an unknown task or a negative ``workers``.
    """

    task: str = "semi"
    max_proposals: int = 20
    workers: int = 0

    def __post_init__(self) -> None:
        if self.task not in SCORE_TASKS:
            raise ValueError(f"Unknown score.task `{self.task}` (the DAVIS task); expected one of "
                             f"{list(SCORE_TASKS)}")
        if self.workers < 0:
            raise ValueError(f"score.workers must be >= 0 (0: one per core), got {self.workers}")


@dataclass
class PropagationParams:
    """Settings of label propagation; the defaults are DINO's (Caron et al. 2021,
    ``eval_video_segmentation.py``), ``propagate=crw`` sets those of CRW (Jabri et al. 2020).

    Attributes:
        n_last_frames: previous predictions kept in the context besides the first frame.
        size_mask_neighborhood: neighbourhood radius in patches (square of side ``2r+1``); 0 disables it.
        topk: affinities kept per query patch.
        temperature: softmax temperature of the kept affinities.
        first_frame_unrestricted: the first frame's patches are all reachable (CRW's long-term memory).
        norm_mask: min-max normalise each class's upsampled map before the argmax (DINO's ``norm_mask``).
        chunk_elements: most affinity entries (query patches x context patches) held at once.

    Raises:
        ValueError: a negative context or radius, ``topk`` or ``chunk_elements`` below 1, a temperature <= 0.
    """

    n_last_frames: int = 7
    size_mask_neighborhood: int = 12
    topk: int = 5
    temperature: float = 0.1
    first_frame_unrestricted: bool = False
    norm_mask: bool = True
    chunk_elements: int = 1 << 23

    def __post_init__(self) -> None:
        if self.n_last_frames < 0 or self.size_mask_neighborhood < 0:
            raise ValueError(f"n_last_frames and size_mask_neighborhood must be >= 0, got {self}")
        if self.topk < 1 or self.temperature <= 0 or self.chunk_elements < 1:
            raise ValueError(f"topk and chunk_elements must be >= 1 and temperature > 0, got {self}")
