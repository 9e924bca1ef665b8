"""Recordings that MNE can read (EDF, BDF, GDF, FIF, BrainVision, EEGLAB...), EEG and MEG alike.

The building blocks every EEG/MEG loader shares: read one file with a clear error when it is
damaged, find its events (stim channel or annotations), cut epochs into a
:class:`~neurodecode.data.container.DecodingData`, and load many files so that one bad file
is reported without losing the others.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Mapping

import mne
import numpy as np
import pandas as pd
from tqdm import tqdm

from ..container import DecodingData, SignalInfo
from ..errors import (CorruptFileError, DataNotFoundError, EmptySelectionError, InvalidDataError,
                     NeurodecodeDataError, PartialLoadError, UnknownEventError)

DATA_CHANNEL_TYPES = ("eeg", "mag", "grad", "seeg", "ecog", "dbs", "eog", "emg", "ecg", "misc")


def read_raw(path, *, preload: bool = True, **kwargs) -> mne.io.BaseRaw:
    """Read any file MNE can read, with errors that name the file.

    Parameters
    ----------
    path : path-like
        EDF, BDF, GDF, FIF, BrainVision (``.vhdr``), EEGLAB (``.set``), ... .
    preload : bool
        Load the samples now; a truncated file then fails here rather than later.
    **kwargs
        Passed to :func:`mne.io.read_raw`.

    Raises
    ------
    DataNotFoundError
        The file does not exist.
    CorruptFileError
        MNE cannot parse the file, or it holds no sample.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"recording not found: {path}")
    if path.stat().st_size == 0:
        raise CorruptFileError(f"{path} is empty (0 bytes)")
    if path.suffix.lower() in (".edf", ".bdf"):
        _check_edf_length(path)
    try:
        raw = mne.io.read_raw(path, preload=preload, verbose="error", **kwargs)
    except (ValueError, RuntimeError, OSError, EOFError, IndexError, KeyError, TypeError, UnicodeDecodeError,
            AssertionError, NotImplementedError) as err:
        raise CorruptFileError(f"cannot read {path}: {_reader_failure(path, err)}") from err
    if raw.n_times == 0:
        raise CorruptFileError(f"{path} holds no sample")
    if preload:
        data = raw.get_data(picks="data")
        if not np.isfinite(data).all():
            bad = [raw.ch_names[i] for i in np.nonzero(~np.isfinite(data).all(axis=1))[0]]
            raise InvalidDataError(f"{path}: NaN or infinite samples in channel(s) {bad[:10]}")
    return raw


def _reader_failure(path: Path, err: BaseException) -> str:
    """What MNE's reader said about a file, or, when it said nothing, where it gave up.

    Some readers check their input with bare ``assert`` statements (a ``.txt`` file goes to the
    BOXY reader, which asserts it found a sampling rate), so a file that is not a recording at
    all would otherwise be reported as an empty ``AssertionError``.
    """
    message = str(err).strip()
    if message:
        return f"{type(err).__name__}: {message}"
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        parts = Path(last.filename).parts
        short = "/".join(parts[parts.index("mne"):]) if "mne" in parts else Path(last.filename).name
        where = f" in {short}, line {last.lineno}" + (f": `{last.line}`" if last.line else "")
    return (f"not a recording MNE can read as {path.suffix or 'a file without extension'} (its reader stopped with "
            f"a bare {type(err).__name__}{where}); check the file and its extension")


def _check_edf_length(path: Path) -> None:
    """Refuse an EDF/BDF shorter than its header declares.

    MNE only warns and reads what is there, so a file cut during a copy would otherwise load
    as a shorter recording without anyone noticing.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fixed = fh.read(256)
        try:
            header_bytes, n_records, n_signals = int(fixed[184:192]), int(fixed[236:244]), int(fixed[252:256])
        except ValueError:
            raise CorruptFileError(f"{path}: the EDF/BDF header is unreadable "
                                   "(its size fields are not numbers)") from None
        fh.seek(256 + n_signals * 216)
        counts = fh.read(n_signals * 8)
    if len(counts) < n_signals * 8:
        raise CorruptFileError(f"{path} is truncated inside its header ({size} bytes)")
    try:
        samples_per_record = sum(int(counts[i * 8:(i + 1) * 8]) for i in range(n_signals))
    except ValueError:
        raise CorruptFileError(f"{path}: the EDF/BDF header's samples-per-record fields are not numbers") from None
    bytes_per_sample = 3 if path.suffix.lower() == ".bdf" else 2
    expected = header_bytes + n_records * samples_per_record * bytes_per_sample
    if n_records > 0 and size < expected:
        raise CorruptFileError(f"{path} is truncated: its header declares {n_records} records ({expected} bytes) "
                               f"but the file has {size} bytes")


def select_subjects(subjects, available, *, dataset: str) -> list:
    """The subjects asked for, checked against those a dataset has.

    Parameters
    ----------
    subjects : int, str, list or None
        None selects every available subject.
    available : iterable
        The subjects the dataset's card lists.
    """
    available = list(available)
    if subjects is None:
        return available
    wanted = [subjects] if np.isscalar(subjects) else list(subjects)
    unknown = [s for s in wanted if s not in available]
    if unknown or not wanted:
        raise EmptySelectionError(f"dataset {dataset!r}: subject(s) {unknown or wanted} not available; "
                                  f"it has subjects {available}")
    return wanted


def find_events(raw: mne.io.BaseRaw, *, stim_channel: str | None = None, source: str | None = None):
    """Events of a recording, from its stim channel or its annotations.

    Parameters
    ----------
    raw : mne.io.BaseRaw
    stim_channel : str or None
        Trigger channel to read; by default the first ``stim`` channel, if any.
    source : {"stim", "annotations"} or None
        Force one source; by default the stim channel when one holds events, else annotations.

    Returns
    -------
    events : ndarray of shape (n_events, 3)
    event_id : dict of str to int
        Annotation descriptions to codes, or ``{str(code): code}`` for trigger values.
    """
    stim_picks = mne.pick_types(raw.info, stim=True) if stim_channel is None else [raw.ch_names.index(stim_channel)]
    if source in (None, "stim") and len(stim_picks):
        name = stim_channel or raw.ch_names[stim_picks[0]]
        events = mne.find_events(raw, stim_channel=name, shortest_event=1, verbose="error")
        if len(events) or source == "stim":
            codes = sorted(set(events[:, 2].tolist()))
            return events, {str(c): int(c) for c in codes}
    if source == "stim":
        raise InvalidDataError(f"{_fname(raw)}: no stim channel to read events from")
    if len(raw.annotations) == 0:
        return np.zeros((0, 3), dtype=int), {}
    events, event_id = mne.events_from_annotations(raw, verbose="error")
    return events, event_id


def _fname(raw) -> str:
    return str(raw.filenames[0]) if raw.filenames and raw.filenames[0] else "<in-memory recording>"


def select_event_id(available: Mapping[str, int], wanted, *, where: str) -> dict:
    """Restrict ``available`` to the wanted event names, or say which names exist.

    ``wanted`` is a list of names or a mapping ``{name_in_file: class_name}``; the result maps
    class names to codes. A name the recording lacks raises :class:`UnknownEventError`.
    """
    if wanted is None:
        return dict(available)
    mapping = dict(wanted) if isinstance(wanted, Mapping) else {w: w for w in wanted}
    unknown = [k for k in mapping if k not in available]
    if unknown:
        raise UnknownEventError(f"{where}: unknown event name(s) {unknown}; the recording has {sorted(available)}")
    if not mapping:
        raise EmptySelectionError(f"{where}: no event selected")
    return {mapping[k]: available[k] for k in mapping}


def epochs_to_data(raw: mne.io.BaseRaw, events: np.ndarray, event_id: Mapping[str, int], *, tmin: float,
                   tmax: float, dataset: str, subject, session="0", run="0", picks="data",
                   class_names: Iterable[str] | None = None, baseline=None, modality: str | None = None,
                   extra_metadata: Mapping | None = None, source: str | None = None) -> DecodingData:
    """Cut epochs from a raw recording into a :class:`DecodingData`.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The (preloaded, already filtered) recording.
    events : ndarray of shape (n_events, 3)
    event_id : dict of str to int
        Class name to event code; events with other codes are ignored.
    tmin, tmax : float
        Epoch window in seconds relative to each event (both ends included, as in MNE).
    dataset, subject, session, run
        Metadata written on every trial.
    class_names : list of str or None
        Order of the classes (label ``k`` is ``class_names[k]``); default: ``event_id`` order.
    source : str or None
        The file to name in errors when ``raw`` was built in memory (e.g. from a CSV).
    """
    where = f"{source or _fname(raw)} (subject {subject}, run {run})"
    class_names = tuple(class_names) if class_names is not None else tuple(event_id)
    missing = [c for c in event_id if c not in class_names]
    if missing:
        raise UnknownEventError(f"{where}: classes {missing} are not among class_names {list(class_names)}")
    keep = np.isin(events[:, 2], list(event_id.values()))
    if not keep.any():
        raise EmptySelectionError(f"{where}: none of the events {dict(event_id)} occurs in this recording")
    epochs = mne.Epochs(raw, events[keep], event_id=dict(event_id), tmin=tmin, tmax=tmax, baseline=baseline,
                        picks=picks, preload=True, proj=False, event_repeated="drop", on_missing="ignore",
                        verbose="error")
    if len(epochs) == 0:
        raise EmptySelectionError(f"{where}: every epoch [{tmin}, {tmax}] s fell outside the recording")
    code_to_class = {code: name for name, code in event_id.items()}
    y = np.array([class_names.index(code_to_class[c]) for c in epochs.events[:, 2]], dtype=np.int64)
    meta = pd.DataFrame({"subject": subject, "session": str(session), "run": str(run),
                         "onset": (epochs.events[:, 0] - raw.first_samp) / raw.info["sfreq"],
                         "dataset": dataset}, index=range(len(epochs)))
    for key, value in (extra_metadata or {}).items():
        meta[key] = value
    info = SignalInfo.from_mne(epochs.info, class_names=class_names, tmin=epochs.tmin, modality=modality)
    return DecodingData(epochs.get_data(copy=False), y, meta, info)


def load_many(items: Iterable, load_one: Callable[..., DecodingData], *, on_error: str = "raise",
              desc: str = "loading", progress: bool | None = None) -> DecodingData:
    """Load several files (or subjects) and stack them, keeping the good ones when some fail.

    Parameters
    ----------
    items : iterable
        What to load; each item is passed to ``load_one`` and named by ``str(item)`` in errors.
    load_one : callable
        Returns a :class:`DecodingData` for one item, or None when the item holds nothing selected.
    on_error : {"raise", "skip"}
        ``"raise"``: after trying every item, raise :class:`PartialLoadError`, which lists each
        failure and carries what did load in ``.loaded``. ``"skip"``: warn and return what loaded.
    progress : bool or None
        Show a progress bar; by default only when there is more than one item and stderr is a terminal.
    """
    import warnings

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    items = list(items)
    if not items:
        raise EmptySelectionError(f"{desc}: nothing selected")
    if progress is None:
        progress = len(items) > 1 and os.isatty(2)
    parts, failures = [], {}
    for item in tqdm(items, desc=desc, disable=not progress, leave=False):
        try:
            part = load_one(item)
            if part is not None:  # None: the item holds nothing selected (not a failure)
                parts.append(part)
        except NeurodecodeDataError as err:
            failures[str(item)] = err
    loaded = DecodingData.concatenate(parts) if parts else None
    if failures:
        if on_error == "raise" or loaded is None:
            raise PartialLoadError(loaded, failures)
        warnings.warn(str(PartialLoadError(loaded, failures)), stacklevel=2)
    return loaded


def load_recording(path, *, events=None, tmin: float = 0.0, tmax: float = 1.0, l_freq: float | None = None,
                   h_freq: float | None = None, stim_channel: str | None = None, picks="data",
                   dataset: str | None = None, subject="0", session="0", run="0",
                   baseline=None) -> DecodingData:
    """Epochs of one recording in any format MNE reads, EEG or MEG.

    Parameters
    ----------
    path : path-like
        The recording.
    events : list of str, dict or None
        Which events become classes: names as found (annotation descriptions, or trigger
        values as strings such as ``"1"``), or a mapping ``{name_in_file: class_name}``.
        None keeps every event. BrainVision markers keep their type prefix as MNE reads
        them (``"Comment/T1"``, ``"Stimulus/S  1"``).
    tmin, tmax : float
        Epoch window in seconds around each event.
    l_freq, h_freq : float or None
        Band-pass applied to the continuous data before epoching (MNE's default FIR).
    stim_channel : str or None
        Trigger channel; default: the first stim channel, else the annotations.
    picks : str or list
        Channels kept (default: every data channel, so MEG keeps magnetometers and gradiometers).

    Returns
    -------
    data : DecodingData
        ``X`` of shape (n_trials, n_channels, n_times).
    """
    path = Path(path)
    raw = read_raw(path)
    found, available = find_events(raw, stim_channel=stim_channel)
    if not available:
        raise EmptySelectionError(f"{path}: no events (no stim channel with triggers and no annotations)")
    event_id = select_event_id(available, events, where=str(path))
    if l_freq is not None or h_freq is not None:
        raw.filter(l_freq, h_freq, picks="data", verbose="error")
    return epochs_to_data(raw, found, event_id, tmin=tmin, tmax=tmax, dataset=dataset or path.stem,
                          subject=subject, session=session, run=run, picks=picks, baseline=baseline)
