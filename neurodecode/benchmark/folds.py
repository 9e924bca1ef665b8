"""One fold: pure functions that fit and score a pipeline, the same in-process, under loky or on Dask."""

from __future__ import annotations

import traceback

from threadpoolctl import threadpool_limits

from . import moabb_glue

def _plain_result(res: dict, evaluation: str, dataset_name: str, fold: int, n_folds: int, n_subject_rows: int,
                  metric: str, calibration: str) -> dict:
    row = {"evaluation": evaluation, "calibration": calibration, "dataset": dataset_name, "pipeline": res["pipeline"],
           "subject": int(res["subject"]), "session": str(res["session"]), "fold": int(fold),
           "n_folds": int(n_folds), "n_subject_rows": int(n_subject_rows), "score": float(res["score"]),
           "metric": metric,
           "fit_time": float(res["time"]), "n_train": int(res["n_samples"]),
           "n_test": int(res["n_samples_test"]), "n_channels": int(res["n_channels"]),
           "moabb_dataset": res["dataset"].code}
    row.update({k: float(v) for k, v in res.items() if k.startswith("score_")})
    return row


def score_fold(X, y, metadata, task: dict, *, evaluation: str, dataset_name: str, fold: int, n_folds: int,
               n_subject_rows: int, metric: str, calibration: str = "") -> list[dict]:
    """Fit and score one (pipeline, fold) task with MOABB's own fold function.

    Pure: it depends only on its arguments, so it runs the same in-process, under loky or on
    a Dask worker. BLAS runs on one thread (folds are the unit of parallelism).

    Parameters
    ----------
    X : ndarray of shape (n_trials, n_channels, n_times)
        One subject's (or, for cross-subject, every subject's) epochs, as the paradigm gives them.
    y : ndarray of shape (n_trials,)
    metadata : DataFrame
        The paradigm's metadata (``subject``, ``session``, ``run``), index 0..n_trials-1.
    task : dict
        One entry of MOABB's ``BaseEvaluation._build_task_list``.
    evaluation, dataset_name, metric : str
        Written into the rows.
    fold, n_folds : int
        Fold number within its subject/session and the number of such folds.
    n_subject_rows : int
        Rows the subject has once every fold is stored (how a rerun knows it is complete).
    calibration : str
        The cross-subject calibration mode the task was built with (MOABB's ``cs_mode``; "" for other
        evaluations), written into the rows: part of their key. MOABB's fold function routes the
        task's calibration slice to the pipeline steps that request it.

    Returns
    -------
    rows : list of dict
        One row per test session (one, except for cross-subject on multi-session data).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        results = moabb_glue.evaluate_fold(X, y, metadata, task)
    return [_plain_result(r, evaluation, dataset_name, fold, n_folds, n_subject_rows, metric, calibration)
            for r in results]


def score_transfer(pipeline, name: str, X, y, subjects, sessions, target: int, folds, *, dataset_name: str,
                   metric: str) -> list[dict]:
    """The transfer protocol on one held-out subject: pretrained on the others, calibrated on each fold.

    Parameters
    ----------
    pipeline : estimator
    name : str
    X : ndarray of shape (n_trials, n_channels, n_times)
        Every selected subject's epochs.
    y, subjects, sessions : ndarray of shape (n_trials,)
    target : int
        The held-out subject.
    folds : list of (train_idx, test_idx)
        Its within-session folds (MOABB's splitter), in MOABB's order.
    dataset_name, metric : str

    Returns
    -------
    rows : list of dict
        One per fold (see :func:`~neurodecode.evaluation.transfer_protocol.transfer_evaluate`).
    """
    from ..evaluation.transfer_protocol import transfer_evaluate

    with threadpool_limits(limits=1, user_api="blas"):
        results = transfer_evaluate(pipeline, X, target, folds, y=y, groups=subjects, sessions=sessions,
                                    scoring=metric)
    per_session: dict = {}
    for r in results:
        per_session.setdefault(r["session"], []).append(r)
    rows = []
    for session, part in per_session.items():
        for fold, r in enumerate(part):  # numbered within the session, as within-session rows are
            rows.append({"evaluation": "transfer", "calibration": "", "dataset": dataset_name, "pipeline": name,
                         "subject": int(target), "session": session, "fold": fold, "n_folds": len(part),
                         "n_subject_rows": len(results), "score": r["score"], "metric": metric,
                         "fit_time": r["pretrain_time"] + r["fit_time"], "calibration_time": r["fit_time"],
                         "route": r["route"], "n_train": r["n_source"], "n_calibration": r["n_calibration"],
                         "n_test": r["n_test"], "source_subjects": r["source_subjects"]})
    return rows


def score_learning_curve(pipeline, name: str, X, y, subjects, target: int, *, dataset_name: str, metric: str,
                         trials_per_class, test_fraction: float, n_repeats: int) -> list[dict]:
    """The calibration learning curve of one held-out subject; one row per (point, repeat).

    ``calibration`` is ``"<n> per class"`` (part of the key, so points never mix) and ``fold`` the repeat.
    """
    from ..evaluation.learning_curve import calibration_learning_curve

    with threadpool_limits(limits=1, user_api="blas"):
        results = calibration_learning_curve(pipeline, X, target, y=y, groups=subjects,
                                             trials_per_class=trials_per_class, test_fraction=test_fraction,
                                             n_repeats=n_repeats, scoring=metric)
    return [{"evaluation": "learning-curve", "calibration": f"{r['trials_per_class']} per class",
             "trials_per_class": r["trials_per_class"], "dataset": dataset_name, "pipeline": name,
             "subject": int(target), "session": "0", "fold": r["repeat"], "n_folds": n_repeats,
             "n_subject_rows": len(results), "score": r["score"], "metric": metric,
             "fit_time": r["pretrain_time"] + r["fit_time"], "calibration_time": r["fit_time"],
             "route": r["route"], "labelled": r["labelled"], "n_train": r["n_source"],
             "n_calibration": r["n_calibration"], "n_test": r["n_test"], "n_pool_per_class": r["n_pool_per_class"],
             "points_left_out": r["points_left_out"], "test_fraction": test_fraction} for r in results]


def score_pseudo_online(pipeline, name: str, windows, *, dataset_name: str, train_every: int) -> list[dict]:
    """Pseudo-online evaluation of one pipeline on one subject's windows (leave one run out).

    Returns one row per fold; ``score`` is the nMCC (chance 0.5), the other metrics follow it.
    """
    from ..evaluation.pseudo_online import pseudo_online_evaluate

    with threadpool_limits(limits=1, user_api="blas"):
        scores = pseudo_online_evaluate({name: pipeline}, windows, train_every=train_every)
    n_folds = len(scores)
    rows = []
    for r in scores.to_dict("records"):
        rows.append({"evaluation": "pseudo-online", "dataset": dataset_name, "pipeline": name,
                     "subject": int(r["subject"]), "session": "0", "fold": int(r["fold"]), "n_folds": n_folds,
                     "n_subject_rows": n_folds,
                     "score": float(r["nmcc"]), "metric": "nmcc", "fit_time": float(r["fit_time"]),
                     "n_train": int(r["n_train"]), "n_test": int(r["n_test"]), "test_runs": r["test_runs"],
                     "itr": float(r["itr"]), "balanced_accuracy": float(r["balanced_accuracy"]),
                     "accuracy": float(r["accuracy"])})
    return rows


def _guarded(func, *args, **kwargs):
    """Run a fold function; return ("ok", rows) or ("error", message) instead of raising."""
    try:
        return "ok", func(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - one failing pipeline must not stop the run
        return "error", f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
