"""Apply a trained model to a whole recording: the channel and rate contract, then sliding windows.

A model expects what it was trained on (its :class:`~neurodecode.contract.model_file.ModelCard`):
these channels, by name; this sampling rate; trials of this length, band-passed with this
zero-phase IIR filter, in this unit. :func:`match_recording` makes a recording meet the first
two or says why it cannot; :func:`predict_recording` does the rest, hands the windows to the model
through :func:`~neurodecode.contract.signal.model_input` (the one route by which windows, their
rate and channel order reach a fitted model) and returns one row per window.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.stream import cue_window_labels
from ..contract.model_file import ModelCard
from ..contract.signal import ContractError, match_recording, model_input

__all__ = ["BATCH_WINDOWS", "predict_recording", "prepared_recording"]

#: Windows predicted per call of the model: 256 windows of 64 channels x 481 samples are 63 MB
#: of float64, so memory stays flat whatever the recording's length.
BATCH_WINDOWS = 256


def prepared_recording(raw_or_path, card: ModelCard, *, resample: bool | None = None):
    """A recording as the model's training trials were made: the card's channels and rate, band-passed.

    :func:`match_recording`, then the card's zero-phase IIR band-pass on the whole recording (as
    :meth:`Dataset.load <neurodecode.data.dataset.Dataset.load>` filters each run). The unit is
    left to the caller (``card.scale``).

    Returns
    -------
    raw : mne.io.BaseRaw
        A copy; ``raw_or_path`` is not modified.
    report : dict
        :func:`match_recording`'s report.
    """
    raw, report = match_recording(_read(raw_or_path), card, resample=resample)
    band = (card.paradigm or {}).get("band")
    if band is not None:
        raw.filter(band[0], band[1], method="iir", picks="all", verbose="error")
    return raw, report


def _read(raw_or_path):
    if isinstance(raw_or_path, (str, Path)):
        from ..data.io.recordings import read_raw

        return read_raw(raw_or_path)
    if not hasattr(raw_or_path, "ch_names") or not hasattr(raw_or_path, "get_data"):
        raise TypeError(f"predict_recording: expected an mne Raw or a path, got {type(raw_or_path).__name__}")
    if not getattr(raw_or_path, "preload", True):
        raw_or_path = raw_or_path.copy().load_data(verbose="error")
    return raw_or_path


def cue_onsets(raw, class_names) -> tuple[np.ndarray, np.ndarray]:
    """Onsets (s from the first sample) and class names of the annotations that name one of ``class_names``.

    Returns
    -------
    onsets : ndarray of float, shape (n_cues,)
    names : ndarray of object, shape (n_cues,)
    """
    import mne

    present = [c for c in class_names if c in set(raw.annotations.description)]
    if not present:
        return np.empty(0), np.empty(0, dtype=object)
    event_id = {c: i + 1 for i, c in enumerate(present)}
    events, _ = mne.events_from_annotations(raw, event_id=event_id, verbose="error")
    names = {code: c for c, code in event_id.items()}
    onsets = (events[:, 0] - raw.first_samp) / raw.info["sfreq"]
    return onsets, np.array([names[code] for code in events[:, 2]], dtype=object)


def _class_names(model, card: ModelCard) -> list:
    classes = getattr(model, "classes_", None)
    return list(card.class_names) if classes is None else [_label_name(c, card) for c in classes]


def predict_recording(model, card: ModelCard, raw_or_path, *, step_s: float | None = None,
                      resample: bool | None = None, recentre: bool = False) -> pd.DataFrame:
    """One prediction per sliding window of a continuous recording.

    The recording goes through what the training trials went through: the card's channels and
    rate (:func:`match_recording`), the card's band-pass (MNE's zero-phase IIR, a 4th-order
    Butterworth applied forward and backward on the whole recording, as :meth:`Dataset.load
    <neurodecode.data.dataset.Dataset.load>` filters each run), and the training unit
    (microvolts for EEG). Windows have the trial's length (``card.n_times`` samples) and start
    every ``step_s`` seconds from the first sample.

    Parameters
    ----------
    model : estimator
        Fitted on trials like the card's.
    card : ModelCard
    raw_or_path : mne.io.BaseRaw or path
        A recording; a path is read with :func:`~neurodecode.data.io.recordings.read_raw`.
    step_s : float or None
        Seconds between window starts (rounded to whole samples, at least one); None: a quarter
        of the trial window (0.75 s for 3 s trials), so that every instant is seen by four windows.
    resample : bool or None
        See :func:`match_recording`.
    recentre : bool
        When ``model`` is a transfer model with alignment
        (:func:`~neurodecode.batch.calibrate.transfer_step`), predict with a copy recentred
        without labels on this recording's own non-overlapping windows of the trial's length
        from its first sample (every sample once; :func:`~neurodecode.batch.calibrate.recentred_copy`),
        so that every window is aligned by the one reference of the whole recording. Other
        models: ignored.

    Returns
    -------
    predictions : pandas.DataFrame
        One row per window: ``start_s``, ``end_s`` (times of its first and last samples, from
        the recording's first sample), ``predicted`` (a class name), ``proba_<class>`` for each
        class when the model has ``predict_proba``; when the recording's annotations name the
        card's classes, ``true`` (the class of the cue whose trial interval ``[onset + tmin,
        onset + tmax]`` covers at least half of the window, else empty) and ``overlap`` (that
        fraction; 1.0 is a window exactly where a training trial was cut). ``attrs["match"]``
        holds :func:`match_recording`'s report; ``attrs["recentred"]`` the number of windows the
        model was recentred on (None: not recentred).

    Raises
    ------
    ContractError
        See :func:`match_recording`; or a recording shorter than one window.
    NeurodecodeDataError
        A path that cannot be read (missing, corrupt).
    """
    raw, report = prepared_recording(raw_or_path, card, resample=resample)
    sfreq = float(card.sfreq)
    signal = raw.get_data() * card.scale
    n_window = card.n_times
    window_s = (n_window - 1) / sfreq
    if step_s is None:
        n_step = max(1, n_window // 4)
    else:
        if not (isinstance(step_s, (int, float)) and math.isfinite(step_s) and step_s > 0):
            raise ValueError(f"step_s must be a positive number of seconds, got {step_s!r}")
        n_step = max(1, int(round(step_s * sfreq)))
    n_samples = signal.shape[1]
    if n_samples < n_window:
        raise ContractError(f"{report['file']}: {n_samples / sfreq:.2f} s long, shorter than the model's "
                            f"{window_s:.2f} s window")
    starts = np.arange(0, n_samples - n_window + 1, n_step)
    view = np.lib.stride_tricks.sliding_window_view(signal, n_window, axis=1)  # (n_chans, n_starts, n_window)
    recentred = None
    if recentre:
        from .calibrate import recentred_copy

        reference = np.arange(0, n_samples - n_window + 1, n_window)
        copy = recentred_copy(model, card, np.ascontiguousarray(view[:, reference].transpose(1, 0, 2)))
        if copy is not None:
            model, recentred = copy, len(reference)
    names = _class_names(model, card)
    has_proba = hasattr(model, "predict_proba")
    predicted, proba = [], []
    for first in range(0, len(starts), BATCH_WINDOWS):
        chunk = np.ascontiguousarray(view[:, starts[first:first + BATCH_WINDOWS]].transpose(1, 0, 2))
        labels, p = _predict_chunk(model, chunk, card, has_proba)
        predicted.append(np.asarray([_label_name(v, card) for v in labels], dtype=object))
        if has_proba:
            proba.append(p)
    table = pd.DataFrame({"start_s": starts / sfreq, "end_s": (starts + n_window - 1) / sfreq,
                          "predicted": np.concatenate(predicted)})
    if has_proba:
        for k, name in enumerate(names):
            table[f"proba_{name}"] = np.concatenate(proba)[:, k]
    onsets, cue_classes = cue_onsets(raw, card.class_names)
    if len(onsets):
        true, share = cue_window_labels(table["start_s"], table["end_s"], onsets, cue_classes, *card.window)
        table["true"] = pd.Series(true, dtype=object)
        table["overlap"] = np.round(share, 4)
    table.attrs["match"] = report
    table.attrs["recentred"] = recentred
    return table


def _predict_chunk(model, X, card: ModelCard, has_proba: bool):
    """Labels (``predict``, so that they equal the model's own) and probabilities, features computed once.

    The windows reach the model through :func:`~neurodecode.contract.signal.model_input`, so that a
    model whose first step is one of neurodecode's transformers checks the card's rate and channel
    order against what it was fitted on.
    """
    from sklearn.pipeline import Pipeline

    X = model_input(model, X, card)
    final = model
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        X, final = model[:-1].transform(X), model[-1]
    return final.predict(X), (np.asarray(final.predict_proba(X)) if has_proba else None)


def _label_name(value, card: ModelCard) -> str:
    if isinstance(value, (int, np.integer)) and 0 <= int(value) < len(card.class_names):
        return card.class_names[int(value)]
    return str(value)
