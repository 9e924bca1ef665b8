"""Visual P300 oddball recorded with a Muse 2016 headband (EEG-Notebooks v0.1), subjects 1, 2, 3, 5.

Each CSV is one 120-s run written by muse-lsl: a ``timestamps`` column (LSL seconds), the four
EEG channels TP9, AF7, AF8, TP10 and the auxiliary electrode ``Right AUX`` in microvolts, and a
marker column (``Marker`` for subjects 1-2, ``Marker0`` for subjects 3 and 5) that is 0 except
on the sample of a stimulus: 1 = non-target, 2 = target.

The Muse samples at 256 Hz; the LSL timestamps jitter between 3 and 4 ms around that, so the
sample index, not the timestamp, gives the time of each sample and event.

:func:`load_muse_p300` is the generic :meth:`~neurodecode.data.dataset.Dataset.load` of the
:class:`MuseP300` view (the one epoching path of every dataset), with MNE's default FIR filter
and samples in volts.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import mne
import numpy as np
import pandas as pd

from ..cards import get_card
from ..container import DecodingData
from ..dataset import Dataset, Paradigm, Recording
from ..errors import CorruptFileError, DataNotFoundError, InvalidDataError
from ..io.recordings import select_subjects

DATASET = "eegnotebooks_muse_visual_p300"
SFREQ = 256.0
EEG_CHANNELS = ("TP9", "AF7", "AF8", "TP10")
AUX_CHANNEL = "Right AUX"
MARKER_COLUMNS = ("Marker", "Marker0")
EVENT_ID = {"non_target": 1, "target": 2}
#: How far the rate implied by the timestamps may stray from 256 Hz before the file is refused.
RATE_TOLERANCE = 0.02

_CSV_FILE = re.compile(r"^visual/P300/subject(\d+)/session(\d+)/(data_.+)\.csv$")


def read_muse_csv(path, *, keep_aux: bool = False) -> tuple[mne.io.RawArray, np.ndarray]:
    """One muse-lsl CSV as an MNE recording and its stimulus events.

    Parameters
    ----------
    path : path-like
        The CSV file.
    keep_aux : bool
        Keep the ``Right AUX`` electrode as a fifth EEG channel (dropped by default: on these
        recordings nothing was plugged into it).

    Returns
    -------
    raw : mne.io.RawArray
        Shape (4, n_samples) (5 with ``keep_aux``), in volts, at 256 Hz, with the standard
        10-05 positions of the Muse electrodes.
    events : ndarray of shape (n_events, 3)
        ``[sample, 0, marker]`` at each sample where the marker changes to a non-zero value.

    Raises
    ------
    DataNotFoundError
        The file does not exist.
    CorruptFileError
        The file is empty, truncated, not a CSV, lacks a required column, has no sample, or
        holds text where numbers belong.
    InvalidDataError
        NaN samples, timestamps that do not increase, a rate far from 256 Hz, or markers that
        are not whole numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"Muse CSV not found: {path}")
    if path.stat().st_size == 0:
        raise CorruptFileError(f"{path} is empty (0 bytes)")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"cannot parse {path} as CSV: {type(err).__name__}: {err}") from err

    markers = [c for c in MARKER_COLUMNS if c in table.columns]
    channels = EEG_CHANNELS + ((AUX_CHANNEL,) if keep_aux else ())
    missing = [c for c in ("timestamps",) + channels if c not in table.columns]
    if not markers:
        missing.append(" or ".join(MARKER_COLUMNS))
    if missing:
        raise CorruptFileError(f"{path} is not a muse-lsl recording: it lacks the column(s) {missing}; "
                               f"its columns are {list(table.columns)}")
    if table.empty:
        raise CorruptFileError(f"{path} has a header but no sample")
    marker = markers[0]
    columns = ["timestamps", *channels, marker]
    text = [c for c in columns if not pd.api.types.is_numeric_dtype(table[c])]
    if text:
        column = text[0]
        row = int(pd.to_numeric(table[column], errors="coerce").isna().to_numpy().argmax())
        raise CorruptFileError(f"{path}: column {column!r} holds non-numeric text, first at data row {row} "
                               f"({table[column].iloc[row]!r})")

    values = table[columns].to_numpy(dtype=float)
    nan_rows = np.nonzero(np.isnan(values).any(axis=1))[0]
    # A file cut mid-line leaves a last row with empty fields, which pandas reads as NaN.
    if nan_rows.size and nan_rows[-1] == len(values) - 1 and not _ends_with_newline(path):
        raise CorruptFileError(f"{path} is truncated: its last line ends mid-row without a newline "
                               f"(fields {[c for c, v in zip(columns, values[-1]) if np.isnan(v)]} are missing)")
    if nan_rows.size:
        bad = [c for c, isnan in zip(columns, np.isnan(values[nan_rows]).any(axis=0)) if isnan]
        raise InvalidDataError(f"{path}: NaN values in {nan_rows.size} row(s) (first data rows "
                               f"{nan_rows[:5].tolist()}), column(s) {bad}")

    times = values[:, 0]
    steps = np.diff(times)
    if (steps <= 0).any():
        row = int(np.argmax(steps <= 0)) + 1
        raise InvalidDataError(f"{path}: timestamps must increase, but data row {row} (t={times[row]:.3f} s) "
                               f"does not follow row {row - 1} (t={times[row - 1]:.3f} s)")
    if len(times) > 1:
        rate = (len(times) - 1) / (times[-1] - times[0])
        if abs(rate / SFREQ - 1) > RATE_TOLERANCE:
            raise InvalidDataError(f"{path}: the timestamps imply {rate:.1f} Hz, but a Muse 2016 samples at "
                                   f"{SFREQ:g} Hz (tolerance {RATE_TOLERANCE:.0%}); is this a Muse recording?")

    codes = values[:, -1]
    if not np.array_equal(codes, np.round(codes)):
        row = int(np.argmax(codes != np.round(codes)))
        raise InvalidDataError(f"{path}: marker column {marker!r} must hold whole numbers; data row {row} "
                               f"has {codes[row]:g}")
    codes = codes.astype(np.int64)
    onsets = np.nonzero((codes != 0) & (codes != np.concatenate([[0], codes[:-1]])))[0]
    events = np.column_stack([onsets, np.zeros_like(onsets), codes[onsets]])

    info = mne.create_info(list(channels), SFREQ, "eeg")
    raw = mne.io.RawArray(values[:, 1:-1].T * 1e-6, info, verbose="error")
    # "Right AUX" has no standard position; with it kept, the trials carry no positions (all or none).
    raw.set_montage("standard_1005", on_missing="ignore", verbose="error")
    return raw, events


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) in (b"\n", b"\r")


def load_muse_p300(subjects=None, *, tmin: float = -0.1, tmax: float = 0.8, l_freq: float | None = 1.0,
                   h_freq: float | None = 30.0, keep_aux: bool = False, on_error: str = "raise",
                   progress: bool | None = None) -> DecodingData:
    """Epochs of the Muse visual P300 oddball.

    Parameters
    ----------
    subjects : int, list of int or None
        Subjects to load (1, 2, 3, 5); None loads all.
    tmin, tmax : float
        Epoch window in seconds around each stimulus, both ends included: the default
        -0.1..0.8 s gives 232 samples at 256 Hz. No baseline correction is applied.
    l_freq, h_freq : float or None
        Band-pass of each continuous run before epoching (MNE's default FIR). The 1 Hz edge
        removes the Muse's slow electrode drifts, which are far larger than the P300.
    keep_aux : bool
        Keep the ``Right AUX`` channel (see :func:`read_muse_csv`).
    on_error : {"raise", "skip"}
        What to do when some runs fail, as in :func:`~neurodecode.data.io.recordings.load_many`.
    progress : bool or None
        Progress bar over runs; by default only on a terminal.

    Returns
    -------
    data : DecodingData
        ``X`` of shape (n_trials, 4, n_times) in volts, labels indexing
        ``("non_target", "target")``; about 163 non-targets and 31 targets per run, 3 runs per
        subject. Metadata: ``session`` from the folder name (``"1"``), ``run`` the run index in
        time order (``"0"``-``"2"``), ``recording`` the CSV file name, ``onset`` in seconds
        from the run's first sample.

    Raises
    ------
    PartialLoadError
        With ``on_error="raise"``, when any run fails (missing file, checksum mismatch,
        damaged CSV); ``.loaded`` holds the runs that did load.
    EmptySelectionError
        A requested subject is not in the dataset.
    """
    card = get_card(DATASET)
    # Every subject the card lists, present or not: a missing run is a failure that names it.
    subjects = select_subjects(subjects, card.files_by_subject(_CSV_FILE), dataset=card.name)
    # The one epoching path (the Dataset view's load), with this loader's historic choices: MNE's default FIR
    # filter, samples in volts.
    return MuseP300(keep_aux=keep_aux).load(subjects, tmin=tmin, tmax=tmax, fmin=l_freq, fmax=h_freq,
                                            filter_method="fir", unit="SI", on_error=on_error, progress=progress)


def _read_annotated(relpath: str, *, keep_aux: bool = False):
    """One run with its stimuli as ``target``/``non_target`` annotations."""
    path = get_card(DATASET).path(relpath)
    raw, events = read_muse_csv(path, keep_aux=keep_aux)
    if not np.isin(events[:, 2], list(EVENT_ID.values())).any():
        # Every run of this oddball has stimuli: a run without any is damaged, not a run of another task.
        raise InvalidDataError(f"{path}: none of the stimulus markers {EVENT_ID} occurs in this run")
    names = {code: name for name, code in EVENT_ID.items()}
    raw.set_annotations(mne.annotations_from_events(events, SFREQ, event_desc=names, verbose="error"))
    return raw


class MuseP300(Dataset):
    """The Muse visual P300 runs as a :class:`~neurodecode.data.dataset.Dataset` (session from the folder).

    Parameters
    ----------
    keep_aux : bool
        Keep the ``Right AUX`` electrode as a fifth EEG channel (see :func:`read_muse_csv`).
    """

    def __init__(self, keep_aux: bool = False):
        card = get_card(DATASET)
        super().__init__(DATASET, Paradigm.from_table(card.extra["paradigm"], where=f"card {DATASET}"),
                         modality="eeg", picks="eeg")
        self.keep_aux = keep_aux

    def subjects(self) -> tuple:
        return get_card(DATASET).subjects_present(_CSV_FILE)

    def listed_subjects(self) -> tuple:
        return tuple(get_card(DATASET).files_by_subject(_CSV_FILE))

    def recordings(self, subject) -> list:
        card = get_card(DATASET)
        out = []
        for index, path in enumerate(card.files_by_subject(_CSV_FILE).get(int(subject), [])):
            _, session, name = _CSV_FILE.match(path).groups()
            out.append(Recording(int(subject), session, str(index),
                                 functools.partial(_read_annotated, path, keep_aux=self.keep_aux),
                                 key=card.entry(path).sha256, extra={"recording": name}, source=path))
        return out


def dataset(spec: str = "") -> MuseP300:
    return MuseP300()


def summarize(card=None) -> list:
    data = load_muse_p300()
    return [("P300 epochs", data.shape, data.class_counts())]
