"""Every call into MOABB, in one place, next to the version it was written for.

MOABB is pinned (``moabb==1.7.2`` in ``pyproject.toml``); its private helpers
(``BaseEvaluation._load_data``, ``_create_splitter``, ``_build_task_list`` and
``moabb.evaluations.base._evaluate_fold``) change between releases, so nothing else in
neurodecode touches them. This module also turns any :class:`~neurodecode.data.dataset.Dataset`
into a MOABB dataset and picks the MOABB paradigm that matches its
:class:`~neurodecode.data.dataset.Paradigm`, so MOABB's evaluations run on every dataset
neurodecode can read.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Mapping

import numpy as np
import pandas as pd

MOABB_VERSION = "1.7.2"

#: MOABB evaluation class per CLI name (None: the pseudo-online evaluation, ours). ``transfer`` and
#: ``learning-curve`` are ours too: they load every subject and take the held-out subject's folds
#: from MOABB's within-session splitter (transfer) or split it themselves (learning curve).
EVALUATION_CLASSES = {"within-session": "WithinSessionEvaluation", "cross-session": "CrossSessionEvaluation",
                      "cross-subject": "CrossSubjectEvaluation", "pseudo-online": None,
                      "transfer": "WithinSessionEvaluation", "learning-curve": "WithinSessionEvaluation"}

#: MOABB 1.7.2's ``CrossSubjectMode`` values (``cs_mode``), written out so the CLI can list them without
#: importing MOABB; tests/benchmark/test_cross_subject.py checks them against MOABB's enum.
CALIBRATION_MODES = ("train", "train_trialwise", "train_and_target_unlabeled_20p", "train_and_target_unlabeled_50p",
                     "train_and_target_unlabeled_full", "train_and_target_labeled_20p", "train_and_target_labeled_50p")


def paradigm_name(paradigm) -> str:
    """The MOABB paradigm class that runs a :class:`~neurodecode.data.dataset.Paradigm`.

    Pipelines list these names in ``paradigms``: ``LeftRightImagery`` for imagery with
    exactly the classes ``left_hand``/``right_hand``, ``MotorImagery`` for other imagery,
    ``SSVEP`` and ``P300``.
    """
    if paradigm.kind == "imagery":
        return "LeftRightImagery" if set(paradigm.classes) == {"left_hand", "right_hand"} else "MotorImagery"
    return {"ssvep": "SSVEP", "p300": "P300"}[paradigm.kind]


def make_paradigm(paradigm):
    """A MOABB paradigm object for a :class:`~neurodecode.data.dataset.Paradigm` (band from the card)."""
    from moabb import paradigms

    fmin, fmax = paradigm.band or (None, None)
    name = paradigm_name(paradigm)
    if name == "LeftRightImagery":
        return paradigms.LeftRightImagery(fmin=fmin, fmax=fmax)
    classes = list(paradigm.classes)
    if name == "MotorImagery":
        return paradigms.MotorImagery(events=classes, n_classes=len(classes), fmin=fmin, fmax=fmax)
    if name == "SSVEP":
        return paradigms.SSVEP(events=classes, n_classes=len(classes), fmin=fmin, fmax=fmax)
    return paradigms.P300(events=classes, fmin=fmin, fmax=fmax)


def _moabb_code(name: str) -> str:
    # MOABB requires codes in Camel-KebabCase: letters, digits and dashes.
    return re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-") or "dataset"


def to_moabb_dataset(dataset, subjects):
    """A MOABB dataset object reading the recordings of a neurodecode :class:`~neurodecode.data.dataset.Dataset`.

    A dataset that wraps a MOABB class (``moabb:Name``) is returned as that MOABB object.
    Otherwise MOABB sees each recording as neurodecode reads it (checksums verified), with its
    class-named annotations as events, so MOABB never looks for files of its own.
    """
    native = getattr(dataset, "moabb_dataset", None)
    if native is not None:
        moabb_dataset = native()
        moabb_dataset.subject_list = list(subjects)
        _record_signal_info(moabb_dataset)
        return moabb_dataset
    return _recordings_class()(dataset, subjects)


class _SignalRecorder:
    """Wraps a MOABB dataset's reader to remember the last raw's info (picklable, for workers)."""

    def __init__(self, read, owner):
        self.read, self.owner = read, owner

    def __call__(self, subject):
        sessions = self.read(subject)
        for runs in sessions.values():
            for raw in runs.values():
                self.owner.neurodecode_signal = raw.info
        return sessions


def _record_signal_info(moabb_dataset) -> None:
    moabb_dataset._get_single_subject_data = _SignalRecorder(moabb_dataset._get_single_subject_data, moabb_dataset)


_RECORDINGS_CLASS = []


def _recordings_class():
    """The MOABB dataset class over neurodecode recordings (built on first use: importing MOABB is slow)."""
    if _RECORDINGS_CLASS:
        return _RECORDINGS_CLASS[0]
    from moabb.datasets.base import BaseDataset

    class NeurodecodeRecordings(BaseDataset):
        """MOABB's view of a neurodecode Dataset: each recording as neurodecode reads it."""

        def __init__(self, source, subjects):
            self.source = source
            super().__init__(subjects=list(subjects), sessions_per_subject=source.n_sessions(subjects),
                             events={c: i + 1 for i, c in enumerate(source.paradigm.classes)},
                             code=_moabb_code(source.name), interval=list(source.paradigm.interval),
                             paradigm=source.paradigm.kind, doi=None)

        def _get_single_subject_data(self, subject):
            sessions: dict = {}
            for rec in self.source.recordings(subject):
                raw = rec.read()
                self.neurodecode_signal = raw.info
                sessions.setdefault(rec.session, {})[rec.run] = raw
            return sessions

        def data_path(self, subject, path=None, force_update=False, update_path=None, verbose=None):
            return []

    # Module-level name so that pickle (loky, Dask workers) finds the class.
    NeurodecodeRecordings.__module__ = __name__
    NeurodecodeRecordings.__qualname__ = "NeurodecodeRecordings"
    globals()["NeurodecodeRecordings"] = NeurodecodeRecordings
    _RECORDINGS_CLASS.append(NeurodecodeRecordings)
    return NeurodecodeRecordings


def __getattr__(name):
    # Unpickling in a fresh worker looks the class up by name before anything built it.
    if name == "NeurodecodeRecordings":
        return _recordings_class()
    raise AttributeError(name)


def signal_info(moabb_dataset):
    """Sampling rate and EEG channel names of the last recording MOABB read (None before any).

    Returns a :class:`~neurodecode.data.SignalInfo` of the channels MOABB's paradigms keep (EEG).
    """
    import mne

    from ..data.container import SignalInfo

    info = getattr(moabb_dataset, "neurodecode_signal", None)
    if info is None:
        return None
    picks = mne.pick_types(info, eeg=True, exclude="bads")
    names = tuple(info.ch_names[i] for i in picks)
    return SignalInfo(sfreq=float(info["sfreq"]), ch_names=names, ch_types=("eeg",) * len(names), modality="eeg")


@contextlib.contextmanager
def quiet():
    """MNE's per-run chatter, MOABB's notices and deprecation warnings would bury the progress bar."""
    import warnings

    import mne

    logger = logging.getLogger("moabb")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with mne.utils.use_log_level("ERROR"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            yield
        finally:
            logger.setLevel(level)


def fold_tasks(evaluation: str, dataset, paradigm, subjects, estimators: Mapping, param_grid, scratch,
               random_state: int, calibration: str | None = None):
    """Load the subjects' data through the paradigm and list MOABB's (pipeline, fold) tasks.

    ``calibration`` is a :data:`CALIBRATION_MODES` value, given to ``CrossSubjectEvaluation`` as its
    ``cs_mode``: each task then carries MOABB's calibration slice of the held-out subject
    (``calib_idx``, ``split_metadata``), which :func:`evaluate_fold` routes to the pipeline steps
    that request ``X_target_unlabeled``/``X_target_labeled``/``y_target_labeled`` (and
    ``subjects``), exactly as ``CrossSubjectEvaluation.process`` does.

    Returns
    -------
    X, y, metadata, tasks
        The paradigm's arrays (metadata re-indexed 0..n-1) and the entries of MOABB's
        ``BaseEvaluation._build_task_list``, each scored by :func:`evaluate_fold`.
    """
    import moabb.evaluations as moabb_evaluations
    from joblib import parallel_config

    cls = getattr(moabb_evaluations, EVALUATION_CLASSES[evaluation])
    extra = {}
    if calibration is not None:
        if EVALUATION_CLASSES[evaluation] != "CrossSubjectEvaluation":
            raise ValueError(f"a calibration mode applies to the cross-subject evaluation only, not {evaluation}")
        extra["cs_mode"] = calibration
    evaluator = cls(paradigm=paradigm, datasets=[dataset], random_state=random_state, n_jobs=1,
                    hdf5_path=str(scratch / "moabb_results"), overwrite=True, error_score="raise", **extra)
    process_pipeline = paradigm.make_process_pipelines(dataset)[0]
    # MOABB's own joblib calls must not follow a Dask backend to workers that lack the data.
    with parallel_config(backend="sequential"):
        X, y, metadata = evaluator._load_data(dataset, dict(estimators), process_pipeline, None,
                                              subjects=list(subjects))
    metadata = metadata.reset_index(drop=True)
    splitter = evaluator._create_splitter()
    work_plan = {s: dict(estimators) for s in subjects}
    tasks = evaluator._build_task_list(dataset, X, y, metadata, splitter, work_plan, dict(estimators),
                                       param_grid or None)
    return X, y, metadata, tasks


def evaluate_fold(X, y, metadata, task: dict) -> list:
    """Score one task of :func:`fold_tasks` with MOABB's own fold function (a list of result dicts)."""
    from moabb.evaluations.base import _evaluate_fold

    return _evaluate_fold(X, y, metadata, **task)


def moabb_offline_scores(pipelines: Mapping[str, object], dataset, subjects=None, *,
                         with_idle: bool = False, n_jobs: int = 1, hdf5_path=None) -> pd.DataFrame:
    """MOABB's own ``WithinSessionEvaluation.process`` of the pipelines on any dataset, offline.

    Parameters
    ----------
    pipelines : dict of str to estimator
    dataset : str or Dataset
        A dataset spec (see :func:`neurodecode.data.registry.get_dataset`).
    subjects : list of int or None
        Subjects (default: every subject present).
    with_idle : bool
        False: the dataset's paradigm (left vs right imagery is scored by ROC-AUC, MOABB's
        standard). True: the paradigm's classes plus its idle annotation as one more class
        (cue-locked idle epochs; scored by accuracy).
    n_jobs : int
    hdf5_path : str or None
        Where MOABB caches results (default: a temporary folder, so nothing is reused).

    Returns
    -------
    scores : DataFrame
        MOABB's results: one row per subject, session and pipeline, with ``score``,
        ``time``, ``samples``; plus ``metric``.
    """
    import copy
    import tempfile
    from dataclasses import replace

    from moabb.evaluations import WithinSessionEvaluation

    from ..data.registry import get_dataset

    ds = get_dataset(dataset)
    if with_idle:
        if ds.paradigm.idle is None:
            raise ValueError(f"dataset {ds.name!r} has no idle annotation in its paradigm")
        ds = copy.copy(ds)
        ds.paradigm = replace(ds.paradigm, classes=(*ds.paradigm.classes, ds.paradigm.idle))
    subjects = ds.select_subjects(None if subjects is None else [int(s) for s in np.atleast_1d(subjects)])
    with tempfile.TemporaryDirectory() as tmp, quiet():
        paradigm = make_paradigm(ds.paradigm)
        evaluation = WithinSessionEvaluation(paradigm=paradigm, datasets=[to_moabb_dataset(ds, subjects)],
                                             overwrite=True, hdf5_path=hdf5_path or tmp, n_jobs=n_jobs,
                                             random_state=42, verbose="ERROR")
        scores = evaluation.process(dict(pipelines))
    scores = scores.copy()
    scores["metric"] = paradigm.scoring if isinstance(paradigm.scoring, str) else "score"
    return scores


__all__ = ["CALIBRATION_MODES", "EVALUATION_CLASSES", "evaluate_fold", "fold_tasks", "make_paradigm",
           "moabb_offline_scores", "paradigm_name", "quiet", "signal_info", "to_moabb_dataset"]
