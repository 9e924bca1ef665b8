"""Evaluation: metrics, time-ordered splitters, pseudo-online and streaming evaluation, benchmark runs."""

from .metrics import (ITRScorer, class_recall_scorer, itr_scorer, nmcc, nmcc_scorer, per_class_recall,
                      wolpaw_bits_per_decision, wolpaw_itr)
from .splitters import ContiguousBlockSplit, LeaveOneRunOut
from .pseudo_online import evaluate_fold, moabb_offline_scores, pseudo_online_evaluate, side_by_side
from .online import Decision, StreamingDecoder, decode_stream
from .results import ResultStore
from .benchmark import BenchmarkConfig, load_pipelines, load_results, run_benchmark, session_scores

__all__ = [
    "ITRScorer", "class_recall_scorer", "itr_scorer", "nmcc", "nmcc_scorer", "per_class_recall",
    "wolpaw_bits_per_decision", "wolpaw_itr",
    "ContiguousBlockSplit", "LeaveOneRunOut",
    "evaluate_fold", "moabb_offline_scores", "pseudo_online_evaluate", "side_by_side",
    "Decision", "StreamingDecoder", "decode_stream",
    "ResultStore", "BenchmarkConfig", "load_pipelines", "load_results", "run_benchmark", "session_scores",
]
