"""How a pretrained model's score on a new person grows with that person's labelled calibration trials.

:func:`calibration_learning_curve` pretrains on every subject but the held-out one, once, then scores
it on a fixed test part of the held-out subject after calibrating on 0, 4, 8, 16, 36... trials per
class of the rest (0: the calibration trials are given without their labels, recentring only). The
test trials are the same at every point, and each point's calibration trials contain the previous
point's (nested), so the points differ only by the labelled trials added.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import get_scorer
from sklearn.preprocessing import LabelEncoder

from .transfer_protocol import calibrate_model, pretrain, split_arrays

__all__ = ["DEFAULT_TRIALS_PER_CLASS", "calibration_learning_curve", "calibration_split"]

#: The points of the curve: labelled calibration trials per class of the held-out subject.
DEFAULT_TRIALS_PER_CLASS = (0, 4, 8, 16, 36)


def calibration_split(y_target, *, test_fraction=0.25, random_state=0):
    """Split one subject's trials into a fixed, stratified test part and an ordered calibration pool per class.

    Parameters
    ----------
    y_target : ndarray of shape (n,)
        The held-out subject's labels (only their classes decide the split; no label is read further).
    test_fraction : float
        Share of each class held out for testing (at least one trial per class).
    random_state : int

    Returns
    -------
    test : ndarray of int
        Positions (into ``y_target``) of the test trials.
    pool : dict of label to ndarray of int
        Per class, the remaining positions in a random order: a point of ``n`` trials per class takes
        the first ``n`` of each.
    """
    rng = np.random.default_rng(random_state)
    test, pool = [], {}
    for label in np.unique(y_target):
        positions = rng.permutation(np.flatnonzero(y_target == label))
        n_test = min(max(int(round(test_fraction * len(positions))), 1), len(positions) - 1)
        test.append(positions[:n_test])
        pool[label] = positions[n_test:]
    return np.sort(np.concatenate(test)), pool


def calibration_learning_curve(make_estimator, data, target, *, y=None, groups=None,
                               trials_per_class=DEFAULT_TRIALS_PER_CLASS, test_fraction=0.25, n_repeats=3,
                               random_state=42, scoring="roc_auc") -> list[dict]:
    """Scores of a model pretrained on the other subjects, against the held-out subject's calibration trials.

    For each repeat, the held-out subject's trials are split once by :func:`calibration_split` (a
    stratified ``test_fraction`` for testing, the rest as the calibration pool). The model is
    pretrained once on every other subject; each point ``n`` then calibrates a copy of it
    (:func:`~neurodecode.evaluation.transfer_protocol.calibrate_model`) on the first ``n`` pool
    trials of each class with their labels, and scores the test part. Point 0 gives the whole pool
    *without labels* (unsupervised recentring). A point needing more trials per class than the pool
    holds is left out (the rows of the other points say which were left out and why).

    Parameters
    ----------
    make_estimator : estimator or callable
        An unfitted estimator (cloned) or a function returning one.
    data : DecodingData or ndarray of shape (n_trials, ...)
    target : int or str
        The held-out subject.
    y, groups : array-like of shape (n_trials,) or None
        Labels and subjects (default: ``data``'s, when a DecodingData).
    trials_per_class : sequence of int
        The points of the curve.
    test_fraction : float
    n_repeats : int
        Independent splits of the held-out subject (seeds ``random_state + repeat``).
    random_state : int
    scoring : str
        A scikit-learn scorer name.

    Returns
    -------
    rows : list of dict
        One per (point, repeat): ``trials_per_class``, ``repeat``, ``score``, ``route``,
        ``n_calibration`` (trials given to the model), ``labelled`` (whether their labels were),
        ``n_test``, ``pretrain_time`` and ``fit_time`` (s; calibration),
        ``n_pool_per_class`` (the smallest class's pool), ``points_left_out``,
        ``calibration_idx`` and ``test_idx`` (indices into ``data``).
    """
    X, y, groups = split_arrays(data, y, groups)
    points = sorted({int(n) for n in trials_per_class})
    if not points or points[0] < 0:
        raise ValueError(f"trials_per_class must be non-negative integers; got {list(trials_per_class)}")
    target_idx = np.flatnonzero(groups == target)
    source = np.flatnonzero(groups != target)
    if not len(target_idx) or not len(source):
        raise ValueError(f"subject {target!r} must have trials, and at least one other subject too")
    encoder = LabelEncoder().fit(y[source])
    y_source = encoder.transform(y[source])
    t0 = time.perf_counter()
    pretrained = pretrain(make_estimator, X[source], y_source, groups[source])
    pretrain_time = time.perf_counter() - t0
    scorer = get_scorer(scoring)
    rows = []
    for repeat in range(n_repeats):
        test_pos, pool = calibration_split(y[target_idx], test_fraction=test_fraction,
                                           random_state=random_state + repeat)
        test = target_idx[test_pos]
        y_test = encoder.transform(y[test])
        smallest = min(len(p) for p in pool.values())
        feasible = [n for n in points if n <= smallest]
        left_out = [n for n in points if n > smallest]
        for n in feasible:
            if n == 0:
                calibration = np.sort(target_idx[np.concatenate(list(pool.values()))])
                y_calibration = None  # recentring only: no label of the target reaches the model
            else:
                calibration = np.sort(target_idx[np.concatenate([p[:n] for p in pool.values()])])
                y_calibration = encoder.transform(y[calibration])
            t1 = time.perf_counter()
            model, route = calibrate_model(pretrained, make_estimator, X[source], y_source, groups[source],
                                           X[calibration], y_calibration)
            fit_time = time.perf_counter() - t1
            rows.append({"trials_per_class": n, "repeat": repeat, "pretrain_time": pretrain_time,
                         "fit_time": fit_time, "score": float(scorer(model, X[test], y_test)),
                         "route": route, "n_calibration": int(len(calibration)), "labelled": n > 0,
                         "n_test": int(len(test)), "n_source": int(len(source)),
                         "n_pool_per_class": int(smallest), "points_left_out": left_out,
                         "calibration_idx": calibration.tolist(), "test_idx": test.tolist()})
    return rows
