"""The options of the training loop (:func:`dinosavi.training.loop.train`): the optimisation recipe and its
bookkeeping. A plain dataclass with no heavy imports; it is the ``train`` section of the config schema."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dinosavi.precision import check_precision

__all__ = ["TrainOptions", "warmup_steps"]


def warmup_steps(max_steps: int, pct_start: float) -> int:
    """The whole number of steps the OneCycle learning rate rises over: ``pct_start * max_steps`` rounded
    (half up), the peak reached at the last of them; 0 (no warm-up: the schedule anneals from the peak
    from the first step) when that is under 2 steps, and at most ``max_steps - 1`` so that at least one
    step anneals. ``0.1 x 10`` gives 0: a one-step "warm-up" would peak at step 0, which is none.

    Raises:
        ValueError: ``max_steps`` below 1 or ``pct_start`` outside [0, 1].
    """
    if max_steps < 1 or not 0.0 <= pct_start <= 1.0:
        raise ValueError(f"train.max_steps must be >= 1 and train.pct_start in [0, 1], got {max_steps}, {pct_start}")
    steps = min(math.floor(pct_start * max_steps + 0.5), max_steps - 1)
    return steps if steps >= 2 else 0


@dataclass
class TrainOptions:
    """Optimisation: Adam with a OneCycle schedule over ``max_steps``, gradient clipping by norm.

    ``pct_start``: the share of the steps the learning rate rises over, rounded to whole steps
    (:func:`warmup_steps`; none when that is under 2), so any ``max_steps`` runs.

    ``grad_clip`` None: no clipping. ``precision``: ``fp32``, ``bf16`` (autocast, CPU or CUDA) or
    ``fp16`` (autocast with gradient scaling, CUDA only). ``compile``: None runs the clip loss eagerly;
    a ``torch.compile`` backend name runs it compiled (``inductor``, torch's compiler; ``aot_eager`` traces
    forward and backward without generating code), compiled at the first step; weights and checkpoints are
    the plain model's. ``input_size`` ``(H, W)``: training frames are resized to it.
    ``save_every``/``log_every``: steps between checkpoints and between TensorBoard logs.

    Raises:
        ValueError: an unknown precision, an empty ``compile``, ``max_steps``, ``save_every`` or ``log_every``
            below 1, ``lr`` not positive or ``pct_start`` outside [0, 1].
    """

    lr: float = 4e-4
    weight_decay: float = 0.0
    pct_start: float = 0.05
    grad_clip: float | None = 1.0
    max_steps: int = 1000
    save_every: int = 500
    log_every: int = 50
    input_size: list[int] = field(default_factory=lambda: [224, 224])
    precision: str = "fp32"
    compile: str | None = None

    def __post_init__(self) -> None:
        check_precision(self.precision, "train.precision")
        if self.compile is not None and not self.compile.strip():
            raise ValueError("train.compile must be null (eager) or a torch.compile backend such as `inductor`")
        if min(self.max_steps, self.save_every, self.log_every) < 1:
            raise ValueError(f"train.max_steps, save_every and log_every must be >= 1, got {self.max_steps}, "
                             f"{self.save_every}, {self.log_every}")
        if not self.lr > 0 or not 0.0 <= self.pct_start <= 1.0:
            raise ValueError(f"train.lr must be positive and train.pct_start in [0, 1], got lr={self.lr}, "
                             f"pct_start={self.pct_start}")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"train.input_size must be [H, W] of positive pixels, got {self.input_size}")
