"""PhysioNet EEG Motor Movement/Imagery (eegmmidb 1.0.0): motor-imagery runs as decoding data.

Schalk et al.'s 64-channel BCI2000 recordings (160 Hz EDF+, cues as ``T0``/``T1``/``T2``
annotations) of 109 subjects. Any subject whose files are present under the dataset folder loads;
every file is checked against the sha256 that MNE-Python ships for all 109 subjects
(``mne/data/eegbci_checksums.txt``, named by the card's ``files_from``). The runs used:

* runs 4, 8, 12: imagine opening/closing the left or the right fist (``T1``/``T2``);
* runs 6, 10, 14: imagine both fists or both feet (``T1``/``T2``);
* runs 1, 2: eyes-open / eyes-closed baselines (``T0`` only);
* ``T0`` marks rest between cues in every run.

:func:`load_eegmmidb` reproduces, with default arguments, what MOABB 1.7.2 returns for
``LeftRightImagery().get_data(PhysionetMI(imagined=True))``, trial for trial, without going
through MOABB: per run a zero-phase 4th-order Butterworth band-pass (MNE's IIR default) on the
continuous recording, epochs [0, 3] s after each cue, EEG channels only, samples in microvolts.
It is the generic :meth:`~neurodecode.data.dataset.Dataset.load` of the :class:`EEGMMIDB` view
(the one epoching path of every dataset), with eegmmidb's argument checks and messages.
:func:`moabb_offline_env` and :func:`physionet_mi_offline` let MOABB itself run on the same
folder without touching the network, to check that claim or to benchmark against MOABB.
"""

from __future__ import annotations

import functools
import operator
import re
from dataclasses import replace

import mne
import numpy as np

from ..._utils.env import temporary_environ
from ..cards import DatasetCard, get_card
from ..container import DecodingData
from ..dataset import Dataset, Paradigm, Recording
from ..errors import DataNotFoundError, EmptySelectionError, InvalidDataError
from ..io.recordings import read_raw

DATASET = "eegmmidb"

LEFT_RIGHT_RUNS = (4, 8, 12)
HANDS_FEET_RUNS = (6, 10, 14)
BASELINE_RUNS = (1, 2)

# What T0/T1/T2 mean depends on the run: the same code is a fist in one run and the feet in another.
_RUN_CLASSES = {
    **{run: {"T0": "rest", "T1": "left_hand", "T2": "right_hand"} for run in LEFT_RIGHT_RUNS},
    **{run: {"T0": "rest", "T1": "hands", "T2": "feet"} for run in HANDS_FEET_RUNS},
    **{run: {"T0": "rest"} for run in BASELINE_RUNS},
}

# task -> (runs in loading order, class names in label order)
TASKS = {
    "left_right": (LEFT_RIGHT_RUNS, ("left_hand", "right_hand")),
    "hands_feet": (HANDS_FEET_RUNS, ("hands", "feet")),
    "imagery": (LEFT_RIGHT_RUNS + HANDS_FEET_RUNS, ("left_hand", "right_hand", "hands", "feet")),
}

# MOABB numbers a subject's imagery runs "0".."5": the fist runs first, then the fists/feet runs.
# Keeping its names lets results be joined with MOABB's metadata.
_MOABB_RUN_NAME = {run: str(i) for i, run in enumerate(LEFT_RIGHT_RUNS + HANDS_FEET_RUNS)}

# MOABB's PhysionetMI epochs [0, 3] s after each cue (the cue-to-cue spacing is about 4.1 s).
TRIAL_INTERVAL = (0.0, 3.0)

_FILE_RE = re.compile(r"^MNE-eegbci-data/files/eegmmidb/1\.0\.0/S(\d{3})/S\1R(\d{2})\.edf$")


def _relpath(subject: int, run: int) -> str:
    return f"MNE-eegbci-data/files/eegmmidb/1.0.0/S{subject:03d}/S{subject:03d}R{run:02d}.edf"


@functools.lru_cache(maxsize=1)
def _card() -> DatasetCard:
    return get_card(DATASET)


def available_runs() -> dict:
    """Which runs are present under the dataset folder, for every subject with at least one.

    Files are looked up against the card's list of every published file (all 109 subjects);
    presence is checked here, checksums when a run is read.

    Returns
    -------
    runs : dict of int to tuple of int
        Subject number to its sorted PhysioNet run numbers present, e.g. ``{1: (1, 2, 4, 6, ...)}``.
    """
    root = _card().root()
    found: dict[int, set] = {}
    for f in _card().files:
        match = _FILE_RE.match(f.path)
        if match and (root / f.path).is_file():
            found.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    return {subject: tuple(sorted(runs)) for subject, runs in sorted(found.items())}


def present_subjects(task: str = "left_right") -> tuple:
    """Subjects whose files hold every run of ``task`` (see :data:`TASKS`)."""
    return _subjects_with(TASKS[task][0])


def _as_int(value, what: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise InvalidDataError(f"eegmmidb: {what} must be an integer, got {value!r}") from None


def _standard_channel_names(raw: mne.io.BaseRaw, montage: mne.channels.DigMontage) -> dict:
    """Map the EDF labels (``"Fc5."``, ``"Cz.."``) to 10-05 names (``"FC5"``, ``"Cz"``).

    BCI2000 pads labels with dots and writes them in title case; the montage's own spelling
    is recovered by a case-insensitive lookup.
    """
    by_upper = {name.upper(): name for name in montage.ch_names}
    # The checksum pins the file, so every label is known to have a 10-05 counterpart.
    return {label: by_upper[label.strip(".").upper()] for label in raw.ch_names}


@functools.lru_cache(maxsize=1)
def _montage() -> mne.channels.DigMontage:
    # Cached: parsing the montage file costs as much as reading a run. Callers must not mutate it.
    # MNE 1.13 renamed "standard_1005" to "colin27_1005" (same positions); older MNE knows only the former.
    name = "colin27_1005" if "colin27_1005" in mne.channels.get_builtin_montages() else "standard_1005"
    return mne.channels.make_standard_montage(name)


def read_eegmmidb_run(subject: int, run: int) -> mne.io.Raw:
    """One continuous run, checksum-verified, with 10-05 channel names and class-named cues.

    Parameters
    ----------
    subject : int
        PhysioNet subject number (1-109; see :func:`available_runs` for those present).
    run : int
        PhysioNet run number: 4, 8, 12 (left/right fist imagery), 6, 10, 14 (both fists /
        both feet imagery) or 1, 2 (baselines).

    Returns
    -------
    raw : mne.io.Raw
        Preloaded, 64 EEG channels at 160 Hz in volts, named as in the 10-05 system
        (``"FC5"``, ``"Cz"``, ``"Fp1"``...) with positions from MNE's standard 10-05
        montage (head frame). Annotations are renamed ``T0`` -> ``"rest"`` and, in runs
        4/8/12, ``T1`` -> ``"left_hand"``, ``T2`` -> ``"right_hand"``; in runs 6/10/14,
        ``T1`` -> ``"hands"``, ``T2`` -> ``"feet"``.

    Raises
    ------
    DataNotFoundError
        The file is missing from ``$NEURODECODE_DATA`` (the message names the expected path
        and where to get it).
    ChecksumMismatchError
        The file differs from the one PhysioNet publishes (sha256 from MNE's registry).
    """
    subject, run = _as_int(subject, "subject"), _as_int(run, "run")
    if not 1 <= subject <= 109 or not 1 <= run <= 14:
        raise DataNotFoundError(f"eegmmidb: subject {subject}, run {run} does not exist; PhysioNet has subjects "
                                "1-109, runs 1-14")
    # The card lists every published file, so this checks presence and the sha256 MNE publishes.
    raw = read_raw(_card().path(_relpath(subject, run)))
    montage = _montage()
    raw.rename_channels(_standard_channel_names(raw, montage))
    raw.set_montage(montage)
    present = set(raw.annotations.description)
    raw.annotations.rename({code: name for code, name in _RUN_CLASSES[run].items() if code in present})
    return raw


def _subjects_with(runs) -> tuple:
    return tuple(s for s, have in available_runs().items() if set(runs) <= set(have))


def load_eegmmidb(subjects=None, *, task: str = "left_right", tmin: float = 0.0, tmax: float | None = None,
                  fmin: float | None = 8.0, fmax: float | None = 32.0, resample: float | None = None,
                  on_error: str = "raise", progress: bool | None = None) -> DecodingData:
    """Motor-imagery trials of the PhysioNet eegmmidb dataset, as MOABB's PhysionetMI gives them.

    With default arguments the result equals, subject by subject, MOABB 1.7.2's
    ``LeftRightImagery().get_data(PhysionetMI(imagined=True), subjects=[s])``: same trials in
    the same order, same labels, same samples.

    Parameters
    ----------
    subjects : int, list of int or None
        PhysioNet subject numbers; default: every subject whose files hold the task's runs.
    task : {"left_right", "hands_feet", "imagery"}
        ``"left_right"``: runs 4, 8, 12, classes ``left_hand``/``right_hand``.
        ``"hands_feet"``: runs 6, 10, 14, classes ``hands``/``feet``.
        ``"imagery"``: the six runs, four classes.
    tmin, tmax : float
        Trial window in seconds after each cue (both ends included); ``tmax=None`` means 3 s,
        the end of MOABB's trial interval.
    fmin, fmax : float or None
        Band-pass edges in Hz, applied to each continuous run before epoching with MNE's IIR
        filter (4th-order Butterworth, forward-backward). Both None: no filter.
    resample : float or None
        New sampling rate in Hz, applied to the epochs (as MOABB does).
    on_error : {"raise", "skip"}
        What to do when some runs fail to load; see :func:`~neurodecode.data.io.recordings.load_many`
        (failures are named ``subject 2, session 0, run 0``, MOABB's run names).
    progress : bool or None
        Progress bar over subjects; default: only on a terminal and for several subjects.

    Returns
    -------
    data : DecodingData
        ``X`` of shape (n_trials, 64, n_times) in microvolts (n_times = 481 by default:
        3 s at 160 Hz, both ends included); 45 trials per subject and task (3 runs of 15 cues).
        Trials are ordered by subject, then run (4, 8, 12, 6, 10, 14), then time. Metadata:
        ``subject`` (int), ``session`` (``"0"``), ``run`` (MOABB's run name: ``"0"``-``"2"``
        for runs 4/8/12, ``"3"``-``"5"`` for runs 6/10/14), ``physionet_run`` (4, 8, ...),
        ``onset`` (seconds from the start of the run), ``dataset`` (``"eegmmidb"``).

    Raises
    ------
    EmptySelectionError
        A requested subject lacks some of the task's files (the message names them and the folder).
    PartialLoadError
        Some runs failed to load (``on_error="raise"``); the others are in ``.loaded``.
    """
    if task not in TASKS:
        raise InvalidDataError(f"eegmmidb: unknown task {task!r}; choose one of {list(TASKS)}")
    runs, class_names = TASKS[task]
    eligible = _subjects_with(runs)
    if subjects is None:
        subjects = eligible
    else:
        subjects = [_as_int(s, "subject") for s in np.atleast_1d(subjects).tolist()]
        lacking = [s for s in subjects if s not in eligible]
        if lacking:
            root = _card().root()
            first = next(_relpath(s, r) for s in lacking for r in runs if not (root / _relpath(s, r)).is_file())
            raise EmptySelectionError(
                f"eegmmidb: subject(s) {lacking} lack files of runs {list(runs)} (task {task!r}) under {root}, "
                f"e.g. {first}; get them with mne.datasets.eegbci.load_data or from {_card().source}. "
                f"Subjects with them here: {list(eligible)}")
    t_end = TRIAL_INTERVAL[1] if tmax is None else tmax
    if not tmin < t_end:
        raise InvalidDataError(f"eegmmidb: tmin={tmin} must be smaller than tmax={t_end}")
    if resample is not None and not resample > 0:
        raise InvalidDataError(f"eegmmidb: resample must be a positive rate in Hz, got {resample!r}")
    # The one epoching path: the Dataset view's load (filter each run, epoch, microvolts, resample).
    data = EEGMMIDB(task).load(subjects, tmin=TRIAL_INTERVAL[0] + tmin, tmax=TRIAL_INTERVAL[0] + t_end,
                               fmin=fmin, fmax=fmax, resample=resample, on_error=on_error, progress=progress)
    if task == "left_right":
        return data
    # The view of another task is named "eegmmidb-<task>"; the trials are eegmmidb's, as documented.
    return DecodingData(data.X, data.y, data.metadata.assign(dataset=DATASET), data.info)


# -- the generic Dataset view -------------------------------------------------------------------

class EEGMMIDB(Dataset):
    """eegmmidb as a :class:`~neurodecode.data.dataset.Dataset`: one task's runs, every subject present.

    Parameters
    ----------
    task : {"left_right", "hands_feet", "imagery"}
        Which runs and classes (see :data:`TASKS`).
    """

    def __init__(self, task: str = "left_right"):
        if task not in TASKS:
            raise InvalidDataError(f"eegmmidb: unknown task {task!r}; choose one of {list(TASKS)}")
        card = _card()
        paradigm = Paradigm.from_table(card.extra["paradigm"], where=f"card {DATASET}")
        runs, classes = TASKS[task]
        super().__init__(DATASET if task == "left_right" else f"{DATASET}-{task}",
                         replace(paradigm, classes=classes), modality="eeg", picks="eeg")
        self.task, self.runs = task, runs

    def subjects(self) -> tuple:
        return _subjects_with(self.runs)

    def recordings(self, subject) -> list:
        subject = _as_int(subject, "subject")
        return [Recording(subject, "0", _MOABB_RUN_NAME[run], functools.partial(read_eegmmidb_run, subject, run),
                          key=_card().entry(_relpath(subject, run)).sha256, extra={"physionet_run": run})
                for run in self.runs]


def moabb_offline_env():
    """Environment that points MNE/MOABB's own eegmmidb reader at this folder and away from the network.

    Used by the side-by-side benchmarks that run MOABB's ``PhysionetMI`` itself.
    """
    return temporary_environ({"MNE_DATASETS_EEGBCI_PATH": _card().root(), "MOABB_DOWNLOAD_PROVIDER": "upstream"})


def physionet_mi_offline(subjects=None, *, with_feet_runs: bool = False):
    """MOABB's own ``PhysionetMI(imagined=True)`` restricted to the subjects present here.

    Use it inside :func:`moabb_offline_env`. Every file it will read is checked to exist first,
    since a missing one would send MOABB to the network.
    """
    from moabb.datasets import PhysionetMI

    runs = LEFT_RIGHT_RUNS + (HANDS_FEET_RUNS if with_feet_runs else ())
    subjects = list(_subjects_with(runs) if subjects is None else subjects)
    root = _card().root()
    missing = [_relpath(s, r) for s in subjects for r in runs if not (root / _relpath(s, r)).is_file()]
    if missing:
        raise DataNotFoundError(f"eegmmidb: {len(missing)} file(s) MOABB would read are missing under {root} "
                                f"(first: {missing[:3]}); MOABB would try to download them")
    dataset = PhysionetMI(imagined=True, subjects=subjects)
    if not with_feet_runs:
        # PhysionetMI reads every run these lists name; left/right only.
        dataset.feet_runs = []
    return dataset


def summarize(card=None) -> list:
    """What ``neurodecode datasets`` prints for this card: one row per task with subjects present."""
    rows = []
    for task, label in (("left_right", "left/right fist imagery"), ("hands_feet", "hands/feet imagery")):
        subjects = present_subjects(task)
        if subjects:
            data = load_eegmmidb(subjects, task=task)
            rows.append((f"{label}, {len(subjects)} subjects", data.shape, data.class_counts()))
    return rows


def dataset(spec: str = "") -> EEGMMIDB:
    """The :class:`EEGMMIDB` view for a dataset spec: ``eegmmidb`` or ``eegmmidb:hands_feet``."""
    return EEGMMIDB(spec or "left_right")


__all__ = ["EEGMMIDB", "TASKS", "available_runs", "dataset", "load_eegmmidb", "moabb_offline_env",
           "physionet_mi_offline", "present_subjects", "read_eegmmidb_run", "summarize"]
