"""Evaluation metrics: DAVIS J/F, object-discovery scores, unsupervised matching, reporting.

Names are imported on first use (PEP 562), so ``mode=score`` can read :mod:`dinosavi.metrics.results`
and :mod:`dinosavi.metrics.compiled` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dinosavi.metrics.davis import (
        SequenceScores,
        boundary_f,
        boundary_radius,
        db_statistics,
        evaluate_semisupervised,
        jaccard,
        seg2bmap,
    )
    from dinosavi.metrics.matching import Assignment, match_segments
    from dinosavi.metrics.objects import fg_ari, mean_best_overlap, miou
    from dinosavi.metrics.results import ScoreTable

__all__ = [
    "Assignment",
    "ScoreTable",
    "SequenceScores",
    "boundary_f",
    "boundary_radius",
    "db_statistics",
    "evaluate_semisupervised",
    "fg_ari",
    "jaccard",
    "match_segments",
    "mean_best_overlap",
    "miou",
    "seg2bmap",
]

_MODULES = {
    "Assignment": "matching",
    "ScoreTable": "results",
    "SequenceScores": "davis",
    "boundary_f": "davis",
    "boundary_radius": "protocol",
    "db_statistics": "protocol",
    "evaluate_semisupervised": "davis",
    "fg_ari": "objects",
    "jaccard": "davis",
    "match_segments": "matching",
    "mean_best_overlap": "objects",
    "miou": "objects",
    "seg2bmap": "davis",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
