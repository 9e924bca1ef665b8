"""Metrics for pseudo-online decoding: nMCC, Wolpaw's ITR, per-class recall, and their scorers.

Balanced accuracy and the confusion matrix are scikit-learn's own
(:func:`sklearn.metrics.balanced_accuracy_score`, :func:`sklearn.metrics.confusion_matrix`);
this module adds what scikit-learn lacks and wraps each metric as a scorer usable in
``cross_val_score`` or ``GridSearchCV``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (balanced_accuracy_score, confusion_matrix, make_scorer, matthews_corrcoef,
                             recall_score)
from sklearn.utils.validation import check_is_fitted


def nmcc(y_true, y_pred) -> float:
    """Normalised Matthews correlation coefficient, ``(MCC + 1) / 2``.

    Maps scikit-learn's multi-class MCC from [-1, 1] to [0, 1]: 0.5 is chance (or a
    constant prediction), 1 a perfect decoder. Unlike accuracy it is not inflated by a
    dominant class such as the idle state of a continuous recording.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_decisions,)

    Returns
    -------
    score : float in [0, 1]
    """
    return (float(matthews_corrcoef(y_true, y_pred)) + 1.0) / 2.0


def wolpaw_bits_per_decision(accuracy, n_classes: int) -> np.ndarray | float:
    """Wolpaw's information per decision, in bits.

    ``B = log2 N + P log2 P + (1 - P) log2((1 - P) / (N - 1))`` for ``1/N < P <= 1``
    (``0 log2 0`` taken as 0, so ``P = 1`` gives ``log2 N``). At and below chance
    (``P <= 1/N``) the value is defined as 0 bits: the formula would rise again below chance,
    crediting a decoder worse than guessing with information it does not transmit.

    Parameters
    ----------
    accuracy : float or array-like
        Probability ``P`` of a correct decision, in [0, 1].
    n_classes : int
        Number of possible decisions ``N`` (at least 2).

    Returns
    -------
    bits : float or ndarray, same shape as ``accuracy``
    """
    n = int(n_classes)
    if n != n_classes or n < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    p = np.asarray(accuracy, dtype=float)
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"accuracy must lie in [0, 1], got {accuracy!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        hit = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
        miss = np.where(p < 1, (1 - p) * np.log2(np.where(p < 1, (1 - p) / (n - 1), 1.0)), 0.0)
    bits = np.where(p > 1.0 / n, np.log2(n) + hit + miss, 0.0)
    return float(bits) if bits.ndim == 0 else bits


def wolpaw_itr(accuracy, n_classes: int, decision_interval_s: float) -> np.ndarray | float:
    """Information transfer rate (Wolpaw et al. 1998) in bits per minute.

    Bits per decision (:func:`wolpaw_bits_per_decision`, 0 at and below chance) times
    decisions per minute, ``60 / decision_interval_s``. For sliding windows the decision
    interval is the window step, not the window length: a decoder updating every 0.125 s
    makes 480 decisions a minute.

    Parameters
    ----------
    accuracy : float or array-like
        Probability of a correct decision, in [0, 1].
    n_classes : int
        Number of possible decisions.
    decision_interval_s : float
        Seconds between two decisions (> 0).

    Returns
    -------
    itr : float or ndarray
        Bits per minute.
    """
    if not (np.isfinite(decision_interval_s) and decision_interval_s > 0):
        raise ValueError(f"decision_interval_s must be a positive number of seconds, got {decision_interval_s!r}")
    return wolpaw_bits_per_decision(accuracy, n_classes) * (60.0 / decision_interval_s)


def per_class_recall(y_true, y_pred, labels=None) -> np.ndarray:
    """Recall (true-positive rate) of each class.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_decisions,)
    labels : array-like or None
        The classes, in output order; default: sorted union of ``y_true`` and ``y_pred``.

    Returns
    -------
    recall : ndarray of shape (n_labels,)
        NaN for a class absent from ``y_true`` (its recall is undefined).
    """
    labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)])) if labels is None else labels
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


class ITRScorer:
    """Scorer giving Wolpaw's ITR in bits per minute: ``scorer(estimator, X, y)``.

    The number of classes is that of the fitted estimator (``estimator.classes_``), so a
    test fold missing a class does not change ``N``.

    Parameters
    ----------
    decision_interval_s : float
        Seconds between decisions (the window step for sliding windows).
    accuracy : {"balanced", "plain"}
        Which accuracy plays ``P``: ``"balanced"`` (mean per-class recall; the default,
        so that a decoder always answering the dominant idle class transmits 0 bits) or
        ``"plain"`` (fraction of correct decisions, Wolpaw's original, which assumes
        balanced classes).
    """

    def __init__(self, decision_interval_s: float, accuracy: str = "balanced"):
        self.decision_interval_s = decision_interval_s
        self.accuracy = accuracy

    def __call__(self, estimator, X, y) -> float:
        if self.accuracy not in ("balanced", "plain"):
            raise ValueError(f"accuracy must be 'balanced' or 'plain', got {self.accuracy!r}")
        check_is_fitted(estimator)
        y_pred = estimator.predict(X)
        p = balanced_accuracy_score(y, y_pred) if self.accuracy == "balanced" else float(np.mean(y_pred == y))
        return wolpaw_itr(p, len(estimator.classes_), self.decision_interval_s)

    def __repr__(self) -> str:
        return f"ITRScorer(decision_interval_s={self.decision_interval_s!r}, accuracy={self.accuracy!r})"


def itr_scorer(decision_interval_s: float, accuracy: str = "balanced") -> ITRScorer:
    """An sklearn scorer for Wolpaw's ITR in bits per minute; see :class:`ITRScorer`."""
    return ITRScorer(decision_interval_s, accuracy)


def class_recall_scorer(label):
    """An sklearn scorer for the recall of one class (e.g. how often idle is recognised as idle)."""
    return make_scorer(recall_score, labels=[label], average="macro", zero_division=np.nan)


#: sklearn scorer for :func:`nmcc`.
nmcc_scorer = make_scorer(nmcc)

__all__ = ["nmcc", "wolpaw_bits_per_decision", "wolpaw_itr", "per_class_recall", "ITRScorer", "itr_scorer",
           "class_recall_scorer", "nmcc_scorer"]
