"""Evaluation metrics: the DAVIS region (J) and boundary (F) measures."""

from metavos.metrics.davis import (
    DavisEvaluator,
    db_eval_boundary,
    db_eval_iou,
    db_statistics,
    evaluate_video,
    seg2bmap,
    summarize,
)

__all__ = [
    "DavisEvaluator",
    "db_eval_boundary",
    "db_eval_iou",
    "db_statistics",
    "evaluate_video",
    "seg2bmap",
    "summarize",
]
