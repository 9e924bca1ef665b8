"""Planning a benchmark run: which datasets and subjects, and which (pipeline, fold) units are still to run.

The planner counts units before loading any data (so the progress bar is right from the start),
then yields them lazily, loading each subject's data just before its folds are sent.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from joblib import parallel_config

from .._utils.env import temporary_environ
from ..contract.signal import bind_signal
from ..evaluation.learning_curve import DEFAULT_TRIALS_PER_CLASS
from . import moabb_glue
from .folds import score_fold, score_learning_curve, score_pseudo_online, score_transfer

#: The evaluations, by CLI name (MOABB's three, and ours: pseudo-online, transfer, learning-curve).
EVALUATIONS = tuple(moabb_glue.EVALUATION_CLASSES)
#: The evaluations that train on other subjects than the one they test (at least 2 subjects; their rows
#: are keyed by the data of every selected subject).
ACROSS_SUBJECTS = ("cross-subject", "transfer", "learning-curve")
#: MOABB's ``cs_mode`` values, for ``--calibration`` (cross-subject only; default "train").
CALIBRATION_MODES = moabb_glue.CALIBRATION_MODES
#: The learning curve: labelled calibration trials per class of the held-out subject (0: its pool
#: unlabelled, recentring only), scored on a fixed stratified test part of it, over repeated splits.
LEARNING_CURVE = {"trials_per_class": DEFAULT_TRIALS_PER_CLASS, "test_fraction": 0.25, "n_repeats": 3}
#: What ``--datasets`` runs when not given.
DEFAULT_DATASET = "eegmmidb"
#: MOABB's benchmark() seeds every evaluation with this.
RANDOM_STATE = 42
#: Folds per session of MOABB's within-session evaluation as the planner builds it (MOABB's default,
#: ``n_splits=None`` -> 5); used to count folds before any data are loaded.
WITHIN_SESSION_FOLDS = 5
#: The default run takes this many subjects of each dataset (the first present): every pipeline of
#: ``pipelines/`` on them fits in minutes on a 2-core CPU (``--full``: every subject).
DEFAULT_N_SUBJECTS = 3
#: Pseudo-online settings: 1 s windows every 0.125 s, trained on every 4th window.
PSEUDO_ONLINE = {"window_s": 1.0, "step_s": 0.125, "train_every": 4}


# -- datasets --------------------------------------------------------------------------------

def resolve_datasets(specs=None) -> list:
    """The :class:`~neurodecode.data.dataset.Dataset` of each spec (default: :data:`DEFAULT_DATASET`).

    A spec is a package dataset's name, a card file, a BIDS folder or ``moabb:ClassName``
    (see :func:`neurodecode.data.registry.get_dataset`).
    """
    from ..data.registry import get_dataset

    return [get_dataset(spec) for spec in (specs or [DEFAULT_DATASET])]


@contextlib.contextmanager
def offline_moabb(scratch, dataset=None):
    """MOABB and MNE reading local data only and writing only under ``scratch``.

    ``MNE_DATA`` and MNE's home folder (where ``mne-python.json`` lives) are redirected to
    ``scratch``, so neither MOABB's downloads nor its configuration writes can reach the user's
    folders or the shared data. A dataset that wraps a MOABB class reads MNE's real data folder
    instead, under its own network guard (``dataset.offline()``).
    """
    offline = getattr(dataset, "offline", None)
    if offline is not None:
        with offline():
            yield
        return
    scratch = Path(scratch)
    (scratch / "home").mkdir(parents=True, exist_ok=True)
    with temporary_environ({"MNE_DATA": scratch, "_MNE_FAKE_HOME_DIR": scratch / "home"}):
        yield



def _select_subjects(dataset, subjects, full):
    present = list(dataset.subjects())
    if not present:
        raise ValueError(f"{dataset.name}: no subject's recordings are present (see `neurodecode datasets`)")
    if subjects is None:
        return present if full else present[:DEFAULT_N_SUBJECTS]
    lacking = [s for s in subjects if s not in present]
    if lacking:
        shown = present if len(present) <= 12 else f"{present[:10]}... ({len(present)} in all)"
        raise ValueError(f"{dataset.name}: subject(s) {lacking} have no recordings here; present: {shown}")
    return [int(s) for s in subjects]



# -- planning: which folds to run ------------------------------------------------------------

@dataclass
class _Unit:
    """One schedulable piece of work and the identity of the rows it writes."""

    pipeline: str
    subject: int
    func: Callable
    args: tuple
    kwargs: dict
    keys: list = field(default_factory=list)


class _Planner:
    """Yields the units of a run lazily (data are loaded just before their folds are sent).

    :meth:`count` says beforehand how many units the iteration will yield, without loading
    data, so the progress bar has its true total from the start.
    """

    def __init__(self, config, datasets, pipelines, subjects, scratch, done, failed):
        self.config, self.datasets, self.pipelines = config, datasets, pipelines
        self.subjects, self.scratch, self.done, self.failed = subjects, scratch, done, failed
        self.n_skipped = 0
        self.n_planned = 0
        self.on_plan = None  # callback(n_new_units), called as units are planned

    def _planned(self, n):
        self.n_planned += n
        if self.on_plan is not None and n:
            self.on_plan(n)

    def _complete(self, ds, pipeline, subject, done_counts):
        """A subject whose folds are all stored for this pipeline (from the rows' n_folds)."""
        key = (self.config.evaluation, ds.name, pipeline, subject)
        count, needed = done_counts.get(key, (0, None))
        return needed is not None and count >= needed

    def _done_counts(self):
        counts = {}
        for row in self.done.values():
            key = (row["evaluation"], row["dataset"], row["pipeline"], int(row["subject"]))
            count, _ = counts.get(key, (0, None))
            # A row without n_subject_rows (written by hand or by another tool) cannot tell that its
            # subject is complete: the subject's missing folds are then looked for one by one.
            needed = row.get("n_subject_rows")
            counts[key] = (count + 1, int(needed) if isinstance(needed, (int, float)) and needed == needed else None)
        return counts

    def count(self) -> int:
        """The number of units iterating will yield (folds not stored yet), before loading any data.

        Raises
        ------
        ValueError
            The evaluation cannot run on a dataset (cross-session on one session, cross-subject
            on one subject): said before anything runs.
        """
        total = 0
        for ds in self.datasets:
            pipes = {p.name: p for p in self.pipelines[ds.name]}
            if pipes:
                total += self._count_units(ds, pipes, self.subjects[ds.name])
        return total

    @staticmethod
    def _n_sessions(ds, subject):
        """Sessions of one subject, from the dataset's description (no data read); None if unknown."""
        n = getattr(ds, "n_sessions", None)
        if callable(n):
            return int(n([subject]))
        return None if n is None else int(n)

    def _count_units(self, ds, pipes, subjects) -> int:
        """Units :meth:`__iter__` yields for one dataset: the folds each evaluation makes, less those stored.

        Per subject and pipeline the evaluation fixes the number of folds before any data are
        read: within-session, :data:`WITHIN_SESSION_FOLDS` per session; cross-session, one per
        session (each held out once); cross-subject, one per subject (held out in turn);
        pseudo-online, one unit per subject (its leave-one-run-out folds run together).
        Stored folds are subtracted the way the iteration skips them.
        """
        evaluation = self.config.evaluation
        subjects = [int(s) for s in subjects]
        if evaluation in ACROSS_SUBJECTS and len(subjects) < 2:
            raise ValueError(f"--evaluation {evaluation} holds out one subject at a time and needs at least 2 "
                             f"subjects; {ds.name}: only {subjects} selected")
        sessions = {}
        if evaluation in ("within-session", "cross-session"):
            sessions = {s: self._n_sessions(ds, s) for s in subjects}
        if evaluation == "cross-session":
            single = [s for s, n in sessions.items() if n is not None and n < 2]
            if single and len(single) == len(subjects):
                raise ValueError(f"--evaluation cross-session needs at least 2 sessions per subject, and dataset "
                                 f"{ds.name} has one session; use within-session, cross-subject or pseudo-online")
            if single:
                raise ValueError(f"--evaluation cross-session needs at least 2 sessions per subject; in dataset "
                                 f"{ds.name}, subject(s) {single} have one session")
        counts = self._done_counts()
        stored = {}
        for key in self.done:
            ev, name, subject, session, fold = key[0], key[2], key[3], key[4], key[5]
            if ev == evaluation and key[1] == ds.name:
                fold_id = (session, fold) if evaluation == "within-session" else fold
                stored.setdefault((name, subject), set()).add(fold_id)
        total = 0
        for name in pipes:
            if name in self.failed:
                continue
            for subject in subjects:
                if self._complete(ds, name, subject, counts):
                    continue
                if evaluation in ("pseudo-online", "transfer", "learning-curve"):
                    total += 1  # one unit runs all of the subject's folds (or curve points)
                    continue
                n_sessions = sessions.get(subject) or 1
                expected = {"within-session": WITHIN_SESSION_FOLDS * n_sessions, "cross-session": n_sessions,
                            "cross-subject": 1}[evaluation]
                total += max(expected - len(stored.get((name, subject), ())), 0)
        return total

    def __iter__(self):
        evaluation = self.config.evaluation
        counts = self._done_counts()
        for ds in self.datasets:
            pipes = {p.name: p for p in self.pipelines[ds.name]}
            if not pipes:
                continue
            subjects = self.subjects[ds.name]
            if evaluation == "pseudo-online":
                yield from self._pseudo_online(ds, pipes, subjects, counts)
            elif evaluation in ("transfer", "learning-curve"):
                yield from self._transfer(ds, pipes, subjects, counts)
            else:
                yield from self._moabb(ds, pipes, subjects, counts)

    def _moabb(self, ds, pipes, subjects, counts):
        evaluation = self.config.evaluation
        with offline_moabb(self.scratch, ds), moabb_glue.quiet():
            dataset = moabb_glue.to_moabb_dataset(ds, subjects)
            paradigm = moabb_glue.make_paradigm(ds.paradigm)
            metric = paradigm.scoring if isinstance(paradigm.scoring, str) else "score"
            param_grid = {p.name: p.param_grid for p in pipes.values() if p.param_grid}
            # Cross-subject folds need every subject at once; the others go one subject at a time,
            # which gives the same folds since MOABB's splitters reseed every subject and session.
            groups = [list(subjects)] if evaluation == "cross-subject" else [[s] for s in subjects]
            for group in groups:
                todo = {n: p for n, p in pipes.items()
                        if n not in self.failed and not all(self._complete(ds, n, s, counts) for s in group)}
                if not todo:
                    self.n_skipped += sum(counts.get((evaluation, ds.name, n, s), (0, 0))[0]
                                          for n in pipes for s in group)
                    continue
                # Data load here, under the offline settings of this process.
                X, y, metadata, tasks = moabb_glue.fold_tasks(
                    evaluation, dataset, paradigm, group, {n: p.pipeline for n, p in todo.items()}, param_grid,
                    self.scratch, RANDOM_STATE, calibration=self.config.calibration)
                # MOABB hands pipelines plain arrays: parameters left to the data (sfreq=None...) get the
                # signal's own values, recorded when MOABB read the recordings.
                info = moabb_glue.signal_info(dataset)
                for task in tasks:
                    task["pipeline"] = bind_signal(task["pipeline"], info)
                yield from self._fold_units(ds, X, y, metadata, tasks, metric, counts)

    def _fold_units(self, ds, X, y, metadata, tasks, metric, counts):
        evaluation = self.config.evaluation
        # Number folds within the unit MOABB scores: a subject's session (within-session),
        # a subject (cross-session) or the held-out subject (cross-subject).
        def group_of(task):
            if evaluation == "within-session":
                return (task["subject"], str(task["session"]))
            return (task["subject"],)

        folds_of = {}
        for task in tasks:
            folds = folds_of.setdefault((task["pipeline_name"], group_of(task)), [])
            if task["cv_ind"] not in folds:
                folds.append(task["cv_ind"])
        # Rows a subject has once complete (cross-subject: one per session of the held-out subject).
        subject_rows = {}
        for (name, group), folds in folds_of.items():
            n = len(folds)
            if evaluation == "cross-subject":
                n = metadata.loc[metadata["subject"] == group[0], "session"].nunique()
            subject_rows[(name, group[0])] = subject_rows.get((name, group[0]), 0) + n
        units = []
        for task in tasks:
            name, subject = task["pipeline_name"], int(task["subject"])
            fold = folds_of[(name, group_of(task))].index(task["cv_ind"])
            session = str(task["session"]) if evaluation == "within-session" else None
            prefix = (evaluation, ds.name, name, subject)
            if any(k[:4] == prefix and k[5] == fold and (session is None or k[4] == session) for k in self.done):
                self.n_skipped += 1
                continue
            units.append(_Unit(name, subject, score_fold, (X, y, metadata, task),
                               {"evaluation": evaluation, "dataset_name": ds.name, "fold": fold,
                                "n_folds": len(folds_of[(name, group_of(task))]),
                                "n_subject_rows": subject_rows[(name, task["subject"])], "metric": metric,
                                "calibration": self.config.calibration or ""}))
        self._planned(len(units))
        yield from units

    def _transfer(self, ds, pipes, subjects, counts):
        """Transfer and learning-curve units: one per (pipeline, held-out subject), every subject loaded once.

        The transfer folds of a held-out subject are MOABB's within-session folds of it (same splitter,
        same seed), so its rows sit beside the within-session ones fold for fold.
        """
        evaluation = self.config.evaluation
        todo = {n: p for n, p in pipes.items() if n not in self.failed}
        pending = {n: [s for s in subjects if not self._complete(ds, n, s, counts)] for n in todo}
        self.n_skipped += sum(counts.get((evaluation, ds.name, n, s), (0, 0))[0]
                              for n in todo for s in subjects if s not in pending[n])
        if not any(pending.values()):
            return
        with offline_moabb(self.scratch, ds), moabb_glue.quiet():
            dataset = moabb_glue.to_moabb_dataset(ds, subjects)
            paradigm = moabb_glue.make_paradigm(ds.paradigm)
            metric = paradigm.scoring if isinstance(paradigm.scoring, str) else "accuracy"
            first = next(iter(todo.values()))
            X, y, metadata, tasks = moabb_glue.fold_tasks(
                "within-session", dataset, paradigm, list(subjects), {first.name: first.pipeline}, None,
                self.scratch, RANDOM_STATE)
            info = moabb_glue.signal_info(dataset)
        folds = {}
        for task in tasks:  # one pipeline's tasks: one entry per (subject, session, fold)
            folds.setdefault(int(task["subject"]), []).append((task["train_idx"], task["test_idx"]))
        subject_of = metadata["subject"].to_numpy()
        sessions = metadata["session"].astype(str).to_numpy()
        units = []
        for name, pipe in todo.items():
            estimator = bind_signal(pipe.pipeline, info)
            for subject in pending[name]:
                common = {"dataset_name": ds.name, "metric": metric}
                if evaluation == "transfer":
                    units.append(_Unit(name, subject, score_transfer,
                                       (estimator, name, X, y, subject_of, sessions, subject, folds[subject]),
                                       common))
                else:
                    units.append(_Unit(name, subject, score_learning_curve,
                                       (estimator, name, X, y, subject_of, subject), {**common, **LEARNING_CURVE}))
        self._planned(len(units))
        yield from units

    def _pseudo_online(self, ds, pipes, subjects, counts):
        from ..data.stream import sliding_windows

        for subject in subjects:
            todo = [n for n in pipes if n not in self.failed and not self._complete(ds, n, subject, counts)]
            self.n_skipped += sum(counts.get(("pseudo-online", ds.name, n, subject), (0, 0))[0]
                                  for n in pipes if n not in todo)
            if not todo:
                continue
            with parallel_config(backend="sequential"):
                windows = sliding_windows(ds.streams([subject]), PSEUDO_ONLINE["window_s"], PSEUDO_ONLINE["step_s"])
            units = [_Unit(n, subject, score_pseudo_online, (bind_signal(pipes[n].pipeline, windows.info), n, windows),
                           {"dataset_name": ds.name, "train_every": PSEUDO_ONLINE["train_every"]}) for n in todo]
            self._planned(len(units))
            yield from units
