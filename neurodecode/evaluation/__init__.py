"""Evaluation library: metrics, time-ordered splitters, pseudo-online evaluation. Knows no dataset."""

from .metrics import (ITRScorer, class_recall_scorer, itr_scorer, nmcc, nmcc_scorer, per_class_recall,
                      wolpaw_bits_per_decision, wolpaw_itr)
from .splitters import ContiguousBlockSplit, LeaveOneRunOut
from .pseudo_online import evaluate_fold, pseudo_online_evaluate, side_by_side

__all__ = [
    "ITRScorer", "class_recall_scorer", "itr_scorer", "nmcc", "nmcc_scorer", "per_class_recall",
    "wolpaw_bits_per_decision", "wolpaw_itr",
    "ContiguousBlockSplit", "LeaveOneRunOut",
    "evaluate_fold", "pseudo_online_evaluate", "side_by_side",
]
