"""Pseudo-online evaluation: decode every window of held-out runs, idle stretches included.

Offline evaluation scores cue-locked trials; a live decoder sees a continuous stream. Here
any scikit-learn pipeline taking ``(n, n_channels, n_times)`` windows is trained on cue-locked
epochs or on windows (the user's choice) and tested on *all* sliding windows of held-out time,
scored with nMCC, Wolpaw's ITR, balanced accuracy, per-class recall and the confusion matrix
(Carrara & Papadopoulo, J. Neural Eng. 2024). :func:`evaluate_fold` is a pure function of
its inputs, so folds run in parallel under joblib; :func:`pseudo_online_evaluate` runs every
subject and fold; :func:`moabb_offline_scores` gives MOABB's offline scores for the same
pipelines and :func:`side_by_side` joins both into one table.
"""

from __future__ import annotations

import time
import warnings
from typing import Mapping

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import balanced_accuracy_score, confusion_matrix

from .metrics import nmcc, per_class_recall, wolpaw_itr
from .splitters import LeaveOneRunOut


def evaluate_fold(pipeline, X_train, y_train, X_test, y_test, *, n_classes: int,
                  decision_interval_s: float) -> dict:
    """Fit a fresh clone of ``pipeline`` on one fold's training data and score its test windows.

    Parameters
    ----------
    pipeline : estimator
        Unfitted scikit-learn estimator (it is cloned, never modified).
    X_train : ndarray of shape (n_train, n_channels, n_times)
        Training epochs or windows (their length may differ from the test windows' if the
        pipeline accepts that, as covariance pipelines do).
    y_train : ndarray of shape (n_train,)
        Integer labels in ``0..n_classes-1``.
    X_test : ndarray of shape (n_test, n_channels, n_window)
        Test windows, in time order.
    y_test : ndarray of shape (n_test,)
    n_classes : int
        Number of classes of the problem (the confusion matrix and ITR use all of them,
        even when a fold lacks one).
    decision_interval_s : float
        Seconds between two test windows (the step), for the ITR.

    Returns
    -------
    result : dict
        ``nmcc``, ``itr`` (bits/min, from balanced accuracy; see the docs), ``itr_plain`` (from
        plain accuracy), ``balanced_accuracy``, ``accuracy``, ``recall`` (ndarray of shape
        (n_classes,)), ``confusion`` (ndarray (n_classes, n_classes), rows true), ``y_pred``,
        ``fit_time``, ``predict_time`` (s per window), ``n_train``, ``n_test``.
    """
    estimator = clone(pipeline)
    t0 = time.perf_counter()
    estimator.fit(X_train, y_train)
    t1 = time.perf_counter()
    y_pred = estimator.predict(X_test)
    t2 = time.perf_counter()
    labels = np.arange(n_classes)
    with warnings.catch_warnings():
        # A fold may lack a class the decoder predicts; balanced accuracy then averages the classes present.
        warnings.simplefilter("ignore", UserWarning)
        bacc = float(balanced_accuracy_score(y_test, y_pred))
    acc = float(np.mean(y_pred == y_test))
    return {"nmcc": nmcc(y_test, y_pred),
            "itr": wolpaw_itr(bacc, n_classes, decision_interval_s),
            "itr_plain": wolpaw_itr(acc, n_classes, decision_interval_s),
            "balanced_accuracy": bacc, "accuracy": acc,
            "recall": per_class_recall(y_test, y_pred, labels),
            "confusion": confusion_matrix(y_test, y_pred, labels=labels),
            "y_pred": y_pred, "fit_time": t1 - t0, "predict_time": (t2 - t1) / max(len(X_test), 1),
            "n_train": len(X_train), "n_test": len(X_test)}


def _decision_interval(windows) -> float:
    """The step between consecutive windows of one run (the most common onset difference)."""
    steps = []
    for _, meta in windows.metadata.groupby(["subject", "session", "run"], sort=False):
        steps.extend(np.round(np.diff(np.sort(meta["onset"].to_numpy())), 9).tolist())
    if not steps:
        raise ValueError("cannot infer the window step: no run holds two windows; pass decision_interval_s")
    values, counts = np.unique(steps, return_counts=True)
    return float(values[counts.argmax()])


def _training_epochs(epochs, test_meta) -> np.ndarray:
    """Indices of the subject's epochs sharing no sample with the time spanned by the test windows.

    The test windows of each run span ``[first start, last end)``; an epoch of that run
    overlapping the span is left out of training (epochs of other runs all train).
    """
    keep = np.ones(len(epochs), dtype=bool)
    meta = epochs.metadata
    for (session, run), test in test_meta.groupby(["session", "run"]):
        lo, hi = test["onset"].min(), test["end"].max()
        same = (meta["session"] == session).to_numpy() & (meta["run"] == run).to_numpy()
        keep &= ~(same & (meta["onset"].to_numpy() < hi) & (meta["end"].to_numpy() > lo))
    return np.nonzero(keep)[0]


def _fold_tasks(pipelines, windows, epochs, cv, train_on, train_every):
    for subject in pd.unique(windows.metadata["subject"]):
        sub = windows.select(subject=subject)
        sub_epochs = epochs.select(subject=subject) if train_on == "epochs" else None
        splitter = cv.for_data(sub) if hasattr(cv, "for_data") else cv
        groups = sub.groups(["session", "run"])
        for fold, (train, test) in enumerate(splitter.split(sub.X, sub.y, groups)):
            test_meta = sub.metadata.iloc[test]
            if train_on == "epochs":
                chosen = _training_epochs(sub_epochs, test_meta)
                X_train, y_train = sub_epochs.X[chosen], sub_epochs.y[chosen]
            else:
                train = train[::train_every]
                X_train, y_train = sub.X[train], sub.y[train]
            for name, pipeline in pipelines.items():
                yield (subject, fold, name, test_meta, pipeline, X_train, y_train, sub.X[test], sub.y[test])


def pseudo_online_evaluate(pipelines: Mapping[str, object], windows, *, cv=None, train_on: str = "windows",
                           epochs=None, decision_interval_s: float | None = None, n_jobs: int = 1,
                           train_every: int = 1, return_predictions: bool = False):
    """Within-subject pseudo-online evaluation of several pipelines.

    Parameters
    ----------
    pipelines : dict of str to estimator
        Unfitted pipelines taking windows (n, n_channels, n_times), by name.
    windows : DecodingData
        Sliding windows from :func:`~neurodecode.data.stream.sliding_windows` (metadata
        ``subject``, ``session``, ``run``, ``onset``, ``end``), every class kept.
    cv : cross-validator or None
        Splits one subject's windows; it receives ``groups`` = session/run of each window and
        is first bound to the subject's data by ``cv.for_data(data)`` when it has that
        method (:class:`~neurodecode.evaluation.ContiguousBlockSplit`). Default:
        :class:`~neurodecode.evaluation.LeaveOneRunOut`. A splitter that puts overlapping
        windows on both sides (e.g. a shuffled ``KFold``) gives optimistic scores.
    train_on : {"windows", "epochs"}
        Train on the training fold's windows, or on cue-locked ``epochs`` (same subjects,
        same class names) that share no sample with the fold's test windows.
    epochs : DecodingData or None
        Cue-locked epochs from :func:`~neurodecode.data.stream.cue_epochs`, for ``train_on="epochs"``.
    decision_interval_s : float or None
        Seconds between decisions for the ITR; default: the window step read from the onsets.
    n_jobs : int
        Folds run in parallel under joblib.
    train_every : int
        With ``train_on="windows"``, train on every ``train_every``-th training window only
        (overlapping windows are near-copies: ``train_every=4`` at a 0.125 s step trains on
        windows 0.5 s apart, four times faster). Test windows are never thinned.
    return_predictions : bool
        Also return every test window's true and predicted label.

    Returns
    -------
    scores : DataFrame
        One row per subject, fold and pipeline: ``subject``, ``fold``, ``test_runs``,
        ``pipeline``, ``nmcc``, ``itr``, ``itr_plain``, ``balanced_accuracy``, ``accuracy``,
        ``recall_<class>`` per class, ``confusion`` (nested list), ``n_train``, ``n_test``,
        ``fit_time``, ``predict_time``, ``train_on``, ``decision_interval_s``.
    predictions : DataFrame, only if ``return_predictions``
        One row per test window and pipeline: ``subject``, ``session``, ``run``, ``onset``,
        ``end``, ``fold``, ``pipeline``, ``y_true``, ``y_pred``.
    """
    if train_on not in ("windows", "epochs"):
        raise ValueError(f"train_on must be 'windows' or 'epochs', got {train_on!r}")
    if train_on == "epochs":
        if epochs is None:
            raise ValueError("train_on='epochs' needs the cue-locked epochs (epochs=cue_epochs(streams))")
        if tuple(epochs.info.class_names) != tuple(windows.info.class_names):
            raise ValueError(f"epochs classes {epochs.info.class_names} differ from the windows' "
                             f"{windows.info.class_names}")
    for column in ("onset", "end"):
        if column not in windows.metadata.columns:
            raise ValueError(f"windows metadata lacks {column!r}; build windows with sliding_windows()")
    if not pipelines:
        raise ValueError("no pipeline given")
    if int(train_every) != train_every or train_every < 1:
        raise ValueError(f"train_every must be a positive integer, got {train_every!r}")
    cv = LeaveOneRunOut() if cv is None else cv
    interval = _decision_interval(windows) if decision_interval_s is None else float(decision_interval_s)
    class_names = windows.info.class_names
    tasks = list(_fold_tasks(pipelines, windows, epochs, cv, train_on, int(train_every)))
    results = Parallel(n_jobs=n_jobs)(
        delayed(evaluate_fold)(pipeline, X_tr, y_tr, X_te, y_te, n_classes=len(class_names),
                               decision_interval_s=interval)
        for (_, _, _, _, pipeline, X_tr, y_tr, X_te, y_te) in tasks)
    rows, preds = [], []
    for (subject, fold, name, test_meta, *_, y_test), res in zip(tasks, results):
        row = {"subject": subject, "fold": fold, "test_runs": ",".join(pd.unique(test_meta["run"].astype(str))),
               "pipeline": name, "train_on": train_on, "decision_interval_s": interval}
        row.update({k: res[k] for k in ("nmcc", "itr", "itr_plain", "balanced_accuracy", "accuracy", "n_train",
                                        "n_test", "fit_time", "predict_time")})
        row.update({f"recall_{c}": r for c, r in zip(class_names, res["recall"])})
        row["confusion"] = res["confusion"].tolist()
        rows.append(row)
        if return_predictions:
            part = test_meta[["subject", "session", "run", "onset", "end"]].copy()
            part["fold"], part["pipeline"] = fold, name
            part["y_true"], part["y_pred"] = y_test, res["y_pred"]
            preds.append(part)
    scores = pd.DataFrame(rows)
    if not return_predictions:
        return scores
    return scores, pd.concat(preds, ignore_index=True)


def side_by_side(offline: pd.DataFrame, online: pd.DataFrame) -> pd.DataFrame:
    """One table per pipeline: offline (MOABB) scores next to pseudo-online scores.

    Parameters
    ----------
    offline : DataFrame
        Rows of :func:`neurodecode.benchmark.moabb_glue.moabb_offline_scores` (one or both metrics),
        columns ``pipeline``,
        ``subject``, ``score``, ``metric``.
    online : DataFrame
        Rows of :func:`pseudo_online_evaluate`; an extra ``setting`` column (e.g. ``"1s/0.125s"``)
        gives one set of columns per setting.

    Returns
    -------
    table : DataFrame
        Index: pipeline. Columns: ``offline <metric>`` (mean over subjects), and per setting
        ``<setting> nMCC``, ``<setting> ITR`` (bits/min) and ``<setting> bal. acc.`` (means
        over subjects of the per-subject mean over folds), plus ``n_subjects``.
    """
    table = {}
    for metric, part in offline.groupby("metric"):
        per_subject = part.groupby(["pipeline", "subject"])["score"].mean()
        table[f"offline {metric}"] = per_subject.groupby("pipeline").mean()
    online = online.assign(setting=online["setting"] if "setting" in online.columns else "pseudo-online")
    for setting, part in online.groupby("setting", sort=False):
        per_subject = part.groupby(["pipeline", "subject"])[["nmcc", "itr", "balanced_accuracy"]].mean()
        means = per_subject.groupby("pipeline").mean()
        table[f"{setting} nMCC"] = means["nmcc"]
        table[f"{setting} ITR"] = means["itr"]
        table[f"{setting} bal. acc."] = means["balanced_accuracy"]
        table["n_subjects"] = per_subject.reset_index().groupby("pipeline")["subject"].nunique()
    return pd.DataFrame(table)


__all__ = ["evaluate_fold", "pseudo_online_evaluate", "side_by_side"]
