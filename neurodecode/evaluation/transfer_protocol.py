"""Pretrain on the other subjects, calibrate on the held-out subject's fold, score the fold's test trials.

The protocol of :func:`transfer_evaluate` sits beside MOABB's within-session evaluation: the held-out
subject's folds are the within-session ones (its training trials become calibration trials), and the
model starts from every other subject instead of from nothing. It is one pure function of its
arguments, so the benchmark runs it in-process, under loky or on Dask alike.

How a model is calibrated, in this order (:func:`calibrate_model`):

1. ``calibrate(X, y)`` on a copy of the pretrained model, when the estimator (or the last step of a
   :class:`~sklearn.pipeline.Pipeline`, fed by the fitted earlier steps) has that method;
2. else, when the estimator requests them through scikit-learn's metadata routing
   (``set_fit_request(X_target_labeled=True, ...)``), a refit on the other subjects with the
   calibration trials routed as ``X_target_labeled``/``y_target_labeled`` (or ``X_target_unlabeled``
   when no labels are given), as MOABB's ``CrossSubjectEvaluation`` routes them;
3. else the pretrained model as it is (an estimator that cannot use a calibration: the row says so).
"""

from __future__ import annotations

import copy
import time

import numpy as np
from sklearn import config_context
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.metadata_routing import get_routing_for_object

__all__ = ["calibrate_model", "pretrain", "split_arrays", "transfer_evaluate"]

#: The metadata a transfer estimator may request for ``fit`` (MOABB routes ``subjects``; ours take ``groups``).
ROUTED_KEYS = ("groups", "subjects", "X_target_unlabeled", "X_target_labeled", "y_target_labeled")


def split_arrays(data, y=None, groups=None):
    """``(X, y, groups)`` from a :class:`~neurodecode.data.DecodingData` (groups by subject) or from arrays.

    Parameters
    ----------
    data : DecodingData or ndarray of shape (n_trials, ...)
    y : array-like of shape (n_trials,) or None
        Labels (taken from ``data`` when it is a DecodingData and ``y`` is None).
    groups : array-like of shape (n_trials,) or None
        The subject of each trial (taken from ``data``'s metadata when None).

    Returns
    -------
    X : ndarray of shape (n_trials, ...)
    y, groups : ndarray of shape (n_trials,)
    """
    if hasattr(data, "metadata") and hasattr(data, "X"):
        X = data.X
        y = data.y if y is None else y
        groups = data.groups("subject") if groups is None else groups
    else:
        X = np.asarray(data)
    if y is None or groups is None:
        raise ValueError("labels y and the subject of each trial (groups) are needed: pass them, or a DecodingData")
    y, groups = np.asarray(y), np.asarray(groups)
    if y.shape != (len(X),) or groups.shape != (len(X),):
        raise ValueError(f"y {y.shape} and groups {groups.shape} must both have shape ({len(X)},)")
    return X, y, groups


def _new_estimator(make_estimator):
    """A fresh, unfitted estimator: a clone of an estimator, or what a factory returns."""
    if hasattr(make_estimator, "get_params"):
        return clone(make_estimator)
    return make_estimator()


def _requested(estimator, names) -> set:
    """The ``fit`` metadata among ``names`` that ``estimator`` requests (as MOABB asks, routing on)."""
    with config_context(enable_metadata_routing=True):
        try:
            return set(get_routing_for_object(estimator).consumes("fit", set(names)))
        except (AttributeError, TypeError):
            return set()


def _fit(estimator, X, y, subjects, **calibration):
    """``estimator.fit`` with the subjects and calibration arrays it requests, and only those."""
    params = {"groups": subjects, "subjects": subjects, **{k: v for k, v in calibration.items() if v is not None}}
    wanted = _requested(estimator, params)
    with config_context(enable_metadata_routing=True):
        estimator.fit(X, y, **{k: v for k, v in params.items() if k in wanted})
    return estimator


def pretrain(make_estimator, X, y, subjects):
    """A fresh estimator fitted on the source subjects' trials (their subject routed when requested).

    Parameters
    ----------
    make_estimator : estimator or callable
        An unfitted estimator (cloned) or a function returning one.
    X : ndarray of shape (n_trials, ...)
    y : ndarray of shape (n_trials,)
        Encoded labels.
    subjects : ndarray of shape (n_trials,)

    Returns
    -------
    estimator : fitted estimator
    """
    return _fit(_new_estimator(make_estimator), X, y, subjects)


def calibration_step(model):
    """The object whose ``calibrate`` adapts ``model``, and how to feed it (None when there is none)."""
    if callable(getattr(model, "calibrate", None)):
        return model, None
    if isinstance(model, Pipeline) and callable(getattr(model.steps[-1][1], "calibrate", None)):
        return model.steps[-1][1], model[:-1]
    return None, None


def calibrate_model(pretrained, make_estimator, X_source, y_source, subjects, X_calibration, y_calibration=None):
    """The pretrained model adapted to a new person's calibration trials; the pretrained one is untouched.

    Parameters
    ----------
    pretrained : fitted estimator
        From :func:`pretrain` on ``X_source``.
    make_estimator : estimator or callable
        Used only when the model is refitted with routed calibration data.
    X_source, y_source, subjects : ndarrays
        The source trials, their encoded labels and subjects (for a refit).
    X_calibration : ndarray of shape (n_calibration, ...) or None
        The held-out subject's calibration trials (None or empty: none).
    y_calibration : ndarray of shape (n_calibration,) or None
        Their encoded labels; None: recentring only, no label is given to the model.

    Returns
    -------
    model : fitted estimator
    route : str
        ``"calibrate"``, ``"fit-routed"`` or ``"none"`` (the model could not use the calibration,
        or there was none).
    """
    if X_calibration is None or len(X_calibration) == 0:
        return pretrained, "none"
    model = copy.deepcopy(pretrained)
    target, upstream = calibration_step(model)
    if target is not None:
        Xc = X_calibration if upstream is None else upstream.transform(X_calibration)
        target.calibrate(Xc, y_calibration)
        return model, "calibrate"
    if y_calibration is None:
        keys = {"X_target_unlabeled": X_calibration}
    else:
        keys = {"X_target_labeled": X_calibration, "y_target_labeled": y_calibration}
    fresh = _new_estimator(make_estimator)
    if _requested(fresh, keys) != set(keys):
        return pretrained, "none"
    return _fit(fresh, X_source, y_source, subjects, **keys), "fit-routed"


def transfer_evaluate(make_estimator, data, target, folds, *, y=None, groups=None, sessions=None,
                      scoring="roc_auc") -> list[dict]:
    """Pretrain on every subject but ``target`` once, then per fold calibrate on its training trials and score.

    Parameters
    ----------
    make_estimator : estimator or callable
        An unfitted estimator (cloned) or a function returning one.
    data : DecodingData or ndarray of shape (n_trials, ...)
        Every subject's trials.
    target : int or str
        The held-out subject (a value of ``groups``).
    folds : list of (train_idx, test_idx)
        The held-out subject's folds (indices into ``data``), e.g. MOABB's within-session folds:
        ``train_idx`` are the fold's calibration trials, ``test_idx`` those scored. Both must be
        trials of ``target`` and must not overlap.
    y, groups : array-like of shape (n_trials,) or None
        Labels and subjects (default: ``data``'s, when a DecodingData).
    sessions : array-like of shape (n_trials,) or None
        The session of each trial, written into the rows (default: "0").
    scoring : str
        A scikit-learn scorer name (``"roc_auc"``, ``"accuracy"``, ...).

    Returns
    -------
    rows : list of dict
        One per fold: ``fold``, ``session``, ``score``, ``route`` (see :func:`calibrate_model`),
        ``n_source`` (pretraining trials), ``n_calibration``, ``n_test``, ``pretrain_time`` and
        ``fit_time`` (s; calibration), ``source_subjects``.

    Raises
    ------
    ValueError
        A fold holds trials of another subject, or its training and test trials overlap.
    """
    X, y, groups = split_arrays(data, y, groups)
    target_mask = groups == target
    if not target_mask.any():
        raise ValueError(f"subject {target!r} has no trials here")
    source = np.flatnonzero(~target_mask)
    if not len(source):
        raise ValueError("no other subject to pretrain on")
    encoder = LabelEncoder().fit(y[source])  # from the sources only: target labels shape nothing
    t0 = time.perf_counter()
    pretrained = pretrain(make_estimator, X[source], encoder.transform(y[source]), groups[source])
    pretrain_time = time.perf_counter() - t0
    scorer = get_scorer(scoring)
    rows = []
    for fold, (train_idx, test_idx) in enumerate(folds):
        train_idx, test_idx = np.asarray(train_idx, dtype=int), np.asarray(test_idx, dtype=int)
        if not (target_mask[train_idx].all() and target_mask[test_idx].all()):
            raise ValueError(f"fold {fold} holds trials of subjects other than {target!r}")
        if np.intersect1d(train_idx, test_idx).size:
            raise ValueError(f"fold {fold}: training and test trials overlap")
        t1 = time.perf_counter()
        model, route = calibrate_model(pretrained, make_estimator, X[source], encoder.transform(y[source]),
                                       groups[source], X[train_idx], encoder.transform(y[train_idx]))
        fit_time = time.perf_counter() - t1
        score = scorer(model, X[test_idx], encoder.transform(y[test_idx]))
        session = "0" if sessions is None else str(np.asarray(sessions)[test_idx[0]])
        rows.append({"fold": fold, "session": session, "score": float(score), "route": route,
                     "n_source": int(len(source)), "n_calibration": int(len(train_idx)),
                     "n_test": int(len(test_idx)), "pretrain_time": float(pretrain_time),
                     "fit_time": float(fit_time),
                     "source_subjects": sorted({v.item() if hasattr(v, "item") else v for v in groups[source]})})
    return rows
