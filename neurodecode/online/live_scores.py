"""Running scores of a live session: cues from the marker stream label the decisions they cover.

A cue of class ``k`` at time ``t`` labels the card's trial interval ``[t + tmin, t + tmax]``; a
decision whose window that interval covers for at least half of its length is scored against it
(:func:`~neurodecode.data.stream.cue_window_labels`, the rule of ``neurodecode predict``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..data.stream import cue_window_labels

__all__ = ["LiveScores"]


class LiveScores:
    """Cues so far and the scores of the decisions they labelled.

    Parameters
    ----------
    n_classes : int
    trial : tuple of float
        ``(tmin, tmax)`` of a trial after its cue, in seconds (the card's ``window``).
    step_s : float
        Seconds between decisions (for the ITR).
    """

    def __init__(self, n_classes: int, trial, step_s: float):
        self.n_classes = n_classes
        self.trial = trial
        self.step_s = step_s
        self._onsets, self._labels = [], []
        self._y_true, self._y_pred = [], []

    def add_cue(self, time_s: float, label: int) -> None:
        """A cue of class ``label`` at ``time_s`` (on the decisions' clock)."""
        self._onsets.append(time_s)
        self._labels.append(label)

    def true_class(self, start: float, end: float):
        """Class of the cue covering the window ``[start, end]``, or None."""
        if not self._onsets:
            return None
        return cue_window_labels([start], [end], self._onsets, self._labels, *self.trial)[0][0]

    def add(self, true: int, predicted: int) -> None:
        """One scored decision."""
        self._y_true.append(true)
        self._y_pred.append(predicted)

    def scores(self) -> dict:
        """Running scores of the decisions covered by a cue.

        Returns
        -------
        scores : dict
            ``n_scored``, ``accuracy``, ``balanced_accuracy``, ``nmcc`` and ``itr`` (Wolpaw,
            bits/min, from the balanced accuracy at one decision per step, as the
            pseudo-online evaluation reports it); NaN while nothing is scored.
        """
        from sklearn.metrics import balanced_accuracy_score

        from ..evaluation.metrics import nmcc, wolpaw_itr

        n = len(self._y_true)
        if not n:
            return {"n_scored": 0, "accuracy": math.nan, "balanced_accuracy": math.nan, "nmcc": math.nan,
                    "itr": math.nan}
        y_true, y_pred = np.asarray(self._y_true), np.asarray(self._y_pred)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one class seen so far: sklearn warns, the value is still defined
            bacc = float(balanced_accuracy_score(y_true, y_pred))
            score = float(nmcc(y_true, y_pred))
        return {"n_scored": n, "accuracy": float(np.mean(y_true == y_pred)), "balanced_accuracy": bacc,
                "nmcc": score, "itr": float(wolpaw_itr(bacc, self.n_classes, self.step_s))}
