"""Every call into MOABB's private API, in one place, next to the version it was written for.

MOABB is pinned (``moabb==1.7.2`` in ``pyproject.toml``); its private helpers change between
releases, so nothing else in neurodecode touches them.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

MOABB_VERSION = "1.7.2"


def moabb_offline_scores(pipelines: Mapping[str, object], subjects=None, *, fmin: float = 8.0, fmax: float = 32.0,
                         with_idle: bool = False, n_jobs: int = 1, hdf5_path=None) -> pd.DataFrame:
    """MOABB's offline ``WithinSessionEvaluation`` of the pipelines on the staged eegmmidb data.

    Runs MOABB itself (``physionet_mi_offline()`` inside ``moabb_offline_env()``), never the
    network.

    Parameters
    ----------
    pipelines : dict of str to estimator
    subjects : list of int or None
        Subjects (default: the 20 staged ones).
    fmin, fmax : float
        MOABB's band-pass (zero-phase IIR on each run).
    with_idle : bool
        False: ``LeftRightImagery`` (left vs right fist, scored by ROC-AUC, MOABB's standard).
        True: ``MotorImagery`` with events ``left_hand``, ``right_hand``, ``rest`` (3 classes,
        cue-locked rest epochs as the idle class, scored by accuracy).
    n_jobs : int
    hdf5_path : str or None
        Where MOABB caches results (default: a temporary folder, so nothing is reused).

    Returns
    -------
    scores : DataFrame
        MOABB's results: one row per subject, session and pipeline, with ``score``,
        ``time``, ``samples``; plus ``metric`` (``"roc_auc"`` or ``"accuracy"``).
    """
    import tempfile

    from moabb.evaluations import WithinSessionEvaluation
    from moabb.paradigms import LeftRightImagery, MotorImagery

    from ..data.datasets.eegmmidb import moabb_offline_env, physionet_mi_offline

    with moabb_offline_env(), tempfile.TemporaryDirectory() as tmp:
        dataset = physionet_mi_offline()
        if subjects is not None:
            dataset.subject_list = [int(s) for s in np.atleast_1d(subjects)]
        if with_idle:
            paradigm = MotorImagery(events=["left_hand", "right_hand", "rest"], n_classes=3, fmin=fmin, fmax=fmax)
        else:
            paradigm = LeftRightImagery(fmin=fmin, fmax=fmax)
        evaluation = WithinSessionEvaluation(paradigm=paradigm, datasets=[dataset], overwrite=True,
                                             hdf5_path=hdf5_path or tmp, n_jobs=n_jobs, random_state=42,
                                             verbose="ERROR")
        scores = evaluation.process(dict(pipelines))
    scores = scores.copy()
    scores["metric"] = "accuracy" if with_idle else "roc_auc"
    return scores


