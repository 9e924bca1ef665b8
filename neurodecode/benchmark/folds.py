"""One fold: pure functions that fit and score a pipeline, the same in-process, under loky or on Dask."""

from __future__ import annotations

import traceback

from threadpoolctl import threadpool_limits

from . import moabb_glue

def _plain_result(res: dict, evaluation: str, dataset_name: str, fold: int, n_folds: int, n_subject_rows: int,
                  metric: str) -> dict:
    row = {"evaluation": evaluation, "dataset": dataset_name, "pipeline": res["pipeline"],
           "subject": int(res["subject"]), "session": str(res["session"]), "fold": int(fold),
           "n_folds": int(n_folds), "n_subject_rows": int(n_subject_rows), "score": float(res["score"]),
           "metric": metric,
           "fit_time": float(res["time"]), "n_train": int(res["n_samples"]),
           "n_test": int(res["n_samples_test"]), "n_channels": int(res["n_channels"]),
           "moabb_dataset": res["dataset"].code}
    row.update({k: float(v) for k, v in res.items() if k.startswith("score_")})
    return row


def score_fold(X, y, metadata, task: dict, *, evaluation: str, dataset_name: str, fold: int, n_folds: int,
               n_subject_rows: int, metric: str) -> list[dict]:
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

    Returns
    -------
    rows : list of dict
        One row per test session (one, except for cross-subject on multi-session data).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        results = moabb_glue.evaluate_fold(X, y, metadata, task)
    return [_plain_result(r, evaluation, dataset_name, fold, n_folds, n_subject_rows, metric) for r in results]


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
