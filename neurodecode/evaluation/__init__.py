"""Evaluation library: metrics, time-ordered splitters, pseudo-online evaluation, the transfer protocol
and the calibration learning curve. Knows no dataset."""

from .metrics import (ITRScorer, class_recall_scorer, itr_scorer, nmcc, nmcc_scorer, per_class_recall,
                      wolpaw_bits_per_decision, wolpaw_itr)
from .splitters import ContiguousBlockSplit, LeaveOneRunOut
from .pseudo_online import evaluate_fold, pseudo_online_evaluate, side_by_side
from .transfer_protocol import calibrate_model, pretrain, transfer_evaluate
from .learning_curve import DEFAULT_TRIALS_PER_CLASS, calibration_learning_curve, calibration_split

__all__ = [
    "ITRScorer", "class_recall_scorer", "itr_scorer", "nmcc", "nmcc_scorer", "per_class_recall",
    "wolpaw_bits_per_decision", "wolpaw_itr",
    "ContiguousBlockSplit", "LeaveOneRunOut",
    "evaluate_fold", "pseudo_online_evaluate", "side_by_side",
    "calibrate_model", "pretrain", "transfer_evaluate",
    "DEFAULT_TRIALS_PER_CLASS", "calibration_learning_curve", "calibration_split",
]
