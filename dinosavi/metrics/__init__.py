"""Evaluation metrics: DAVIS J/F, object-discovery scores, unsupervised matching, reporting."""

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
from dinosavi.metrics.results import ScoreTable, format_table

__all__ = [
    "Assignment",
    "ScoreTable",
    "SequenceScores",
    "boundary_f",
    "boundary_radius",
    "db_statistics",
    "evaluate_semisupervised",
    "fg_ari",
    "format_table",
    "jaccard",
    "match_segments",
    "mean_best_overlap",
    "miou",
    "seg2bmap",
]
