"""Continuous recordings as a causal stream: filtering that never sees the future, sliding windows.

A :class:`LabelledStream` is one continuous run, band-passed by a causal IIR filter whose
state is carried forward sample after sample (:class:`CausalBandpass`), with one label per
sample taken from the recording's annotations. From it come

* :func:`sliding_windows`: overlapping windows (length and step in seconds), each labelled by
  the class filling most of it, the idle class included unless asked otherwise;
* :func:`cue_epochs`: cue-locked epochs cut from the *same* causally filtered signal, for
  training a decoder offline-style and testing it on windows;
* :func:`iter_windows`: the windows one at a time, for streaming code.

Streams of any dataset come from :meth:`neurodecode.data.dataset.Dataset.streams`; nothing here
knows a dataset.

Window label rule
-----------------
A window covers the samples ``[start, start + n_window)``. Each sample has the class of the
annotation covering it (or "unlabelled"). The window takes the class with the most samples.
**Ties** (e.g. 80/80 samples of a 1 s window straddling a cue) go to the tied class whose
last sample in the window is the latest, i.e. the state the user is in at the window's end,
the moment a causal decoder would issue its decision. Windows whose majority is
"unlabelled" (e.g. after the last annotation) are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.signal import butter, sosfilt, sosfilt_zi

from .container import DecodingData, SignalInfo
from .errors import EmptySelectionError, InvalidDataError

#: Name given to the "user does nothing" class (eegmmidb's T0 / rest).
IDLE = "idle"
#: How eegmmidb's left/right fist runs (4, 8, 12) map to stream classes: rest is the idle state.
_UNLABELLED = -1


def _n_samples(seconds: float, sfreq: float, what: str) -> int:
    """Seconds to a whole number of samples, refusing lengths that are not (nearly) whole."""
    if not (np.isfinite(seconds) and seconds > 0):
        raise InvalidDataError(f"{what} must be a positive number of seconds, got {seconds!r}")
    n = seconds * sfreq
    if abs(n - round(n)) > 1e-6 * max(1.0, n):
        raise InvalidDataError(f"{what}={seconds} s is {n} samples at {sfreq} Hz; choose a whole number of samples")
    return int(round(n))


class CausalBandpass:
    """Butterworth band-pass applied chunk by chunk, carrying its state forward.

    Filtering a recording in one call or in any sequence of chunks gives the same samples,
    and no output sample depends on a later input sample. The initial state is the filter's
    steady state for a constant input equal to the first sample (as if the signal had been
    flat before the recording began), which removes most of the start-up transient
    without looking ahead.

    Parameters
    ----------
    sfreq : float
        Sampling rate in Hz.
    fmin, fmax : float or None
        Pass band in Hz; ``fmin=None`` gives a low-pass, ``fmax=None`` a high-pass, both
        None no filtering.
    order : int
        Butterworth order (a single forward pass: the attenuation of MNE's forward-backward
        filter of half this order, with a phase delay instead of zero phase).
    """

    def __init__(self, sfreq: float, fmin: float | None = 8.0, fmax: float | None = 32.0, order: int = 4):
        self.sfreq = sfreq
        self.fmin = fmin
        self.fmax = fmax
        self.order = order
        self.reset()

    def reset(self) -> "CausalBandpass":
        """Forget the past: the next chunk starts a new stream."""
        self._zi = None
        self._sos = None
        return self

    def _design(self):
        nyq = self.sfreq / 2.0
        for name, f in (("fmin", self.fmin), ("fmax", self.fmax)):
            if f is not None and not 0 < f < nyq:
                raise InvalidDataError(f"CausalBandpass: {name}={f} Hz must lie strictly between 0 and "
                                       f"Nyquist ({nyq} Hz at {self.sfreq} Hz)")
        if self.fmin is not None and self.fmax is not None and not self.fmin < self.fmax:
            raise InvalidDataError(f"CausalBandpass: fmin={self.fmin} must be below fmax={self.fmax}")
        if self.fmin is None and self.fmax is None:
            return None
        if self.fmin is None:
            return butter(self.order, self.fmax, btype="lowpass", fs=self.sfreq, output="sos")
        if self.fmax is None:
            return butter(self.order, self.fmin, btype="highpass", fs=self.sfreq, output="sos")
        return butter(self.order, [self.fmin, self.fmax], btype="bandpass", fs=self.sfreq, output="sos")

    def process(self, chunk) -> np.ndarray:
        """Filter the next chunk of the stream.

        Parameters
        ----------
        chunk : ndarray of shape (n_channels, n_times)

        Returns
        -------
        filtered : ndarray of shape (n_channels, n_times)
        """
        chunk = np.asarray(chunk, dtype=float)
        if chunk.ndim != 2:
            raise InvalidDataError(f"CausalBandpass: a chunk must have shape (n_channels, n_times), got {chunk.shape}")
        if chunk.shape[1] == 0:
            return chunk.copy()
        if self._zi is None:
            self._sos = self._design()
            if self._sos is not None:
                # Steady state for a constant input equal to the first sample: (n_sections, n_channels, 2).
                self._zi = sosfilt_zi(self._sos)[:, None, :] * chunk[None, :, 0, None]
            else:
                self._zi = np.empty(0)
            self._n_channels = chunk.shape[0]
        elif chunk.shape[0] != self._n_channels:
            raise InvalidDataError(f"CausalBandpass: chunk has {chunk.shape[0]} channels, the stream has "
                                   f"{self._n_channels}")
        if self._sos is None:
            return chunk.copy()
        out, self._zi = sosfilt(self._sos, chunk, axis=1, zi=self._zi)
        return out


@dataclass(frozen=True)
class LabelledStream:
    """One continuous run, causally filtered, with a class per sample.

    Attributes
    ----------
    signal : ndarray of shape (n_channels, n_samples)
        The filtered samples.
    labels : ndarray of shape (n_samples,)
        Index into ``info.class_names`` for each sample, -1 where no annotation applies.
    cues : DataFrame
        One row per annotation kept: ``sample`` (first sample), ``n_samples``, ``label``.
    info : SignalInfo
        Sampling rate, channels, class names (``tmin`` 0), unit.
    metadata : dict
        ``subject``, ``session``, ``run``, ``dataset`` and any extra per-run fields.
    """

    signal: np.ndarray
    labels: np.ndarray
    cues: pd.DataFrame
    info: SignalInfo
    metadata: dict

    @property
    def n_samples(self) -> int:
        return self.signal.shape[1]


def stream_from_raw(raw, classes: Mapping[str, str], *, class_names: Sequence[str] | None = None,
                    fmin: float | None = 8.0, fmax: float | None = 32.0, order: int = 4, picks="eeg",
                    scale: float = 1e6, unit: str = "uV", dataset: str = "unknown", subject=0, session="0",
                    run="0", extra_metadata: Mapping | None = None) -> LabelledStream:
    """Filter a continuous MNE recording causally and label every sample from its annotations.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        Preloaded recording with annotations.
    classes : dict of str to str
        Annotation description to class name, e.g. ``{"rest": "idle", "left_hand":
        "left_hand", ...}``; other annotations leave their samples unlabelled.
    class_names : list of str or None
        Class order (label ``k`` is ``class_names[k]``); default: order of ``classes`` values.
    fmin, fmax : float or None
        Causal band-pass in Hz (see :class:`CausalBandpass`); both None: no filter.
    order : int
        Butterworth order of the causal filter.
    picks : str or list
        Channels kept (MNE picks).
    scale, unit : float, str
        Samples are multiplied by ``scale`` and described by ``unit`` (default: volts to µV,
        as MOABB and :func:`~neurodecode.data.load_eegmmidb` give EEG).
    dataset, subject, session, run, extra_metadata
        Written into ``metadata`` and onto every window or epoch cut from the stream.

    Returns
    -------
    stream : LabelledStream
    """
    class_names = tuple(dict.fromkeys(classes.values())) if class_names is None else tuple(class_names)
    unknown = sorted(set(classes.values()) - set(class_names))
    if unknown:
        raise InvalidDataError(f"classes {unknown} are not among class_names {list(class_names)}")
    sfreq = float(raw.info["sfreq"])
    picked = raw.copy().pick(picks)
    data = picked.get_data() * scale
    if not np.isfinite(data).all():
        raise InvalidDataError(f"{raw.filenames[0] if raw.filenames else 'recording'}: NaN or infinite samples")
    signal = CausalBandpass(sfreq, fmin, fmax, order).process(data)
    labels = np.full(data.shape[1], _UNLABELLED, dtype=np.int64)
    rows = []
    for onset, duration, desc in zip(raw.annotations.onset, raw.annotations.duration,
                                     raw.annotations.description):
        if desc not in classes:
            continue
        start = int(round((onset - raw.first_time) * sfreq)) if raw.annotations.orig_time is not None \
            else int(round(onset * sfreq))
        stop = min(data.shape[1], start + int(round(duration * sfreq)))
        if stop <= max(start, 0):
            continue
        label = class_names.index(classes[desc])
        labels[max(start, 0):stop] = label
        rows.append((max(start, 0), stop - max(start, 0), label))
    if not rows:
        raise EmptySelectionError(f"no annotation among {sorted(classes)} in this recording; it has "
                                  f"{sorted(set(raw.annotations.description))}")
    info = SignalInfo.from_mne(picked.info, class_names=class_names, tmin=0.0, unit=unit)
    metadata = {"subject": subject, "session": str(session), "run": str(run), "dataset": dataset,
                **dict(extra_metadata or {})}
    cues = pd.DataFrame(rows, columns=["sample", "n_samples", "label"])
    return LabelledStream(signal, labels, cues, info, metadata)


def window_labels(labels: np.ndarray, starts: np.ndarray, n_window: int, n_classes: int):
    """Majority class of each window, with the stated tie rule.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
        Class index per sample, -1 for unlabelled.
    starts : ndarray of shape (n_windows,)
        First sample of each window.
    n_window : int
        Samples per window.
    n_classes : int

    Returns
    -------
    label : ndarray of shape (n_windows,)
        Majority class; ties go to the tied class whose last sample in the window is latest;
        -1 where unlabelled samples win.
    fraction : ndarray of shape (n_windows,)
        Share of the window's samples that belong to that class.
    """
    codes = labels + 1  # 0 = unlabelled, so it takes part in the vote
    onehot = np.zeros((labels.size + 1, n_classes + 1), dtype=np.int64)
    onehot[np.arange(1, labels.size + 1), codes] = 1
    cum = np.cumsum(onehot, axis=0)
    counts = cum[starts + n_window] - cum[starts]
    best = counts.max(axis=1)
    winner = counts.argmax(axis=1)
    for i in np.nonzero((counts == best[:, None]).sum(axis=1) > 1)[0]:
        tied = np.nonzero(counts[i] == best[i])[0]
        segment = codes[starts[i]:starts[i] + n_window]
        # The latest sample belonging to any tied class names the winner.
        winner[i] = segment[np.nonzero(np.isin(segment, tied))[0][-1]]
    return winner - 1, best / n_window


def cue_window_labels(window_start, window_end, cue_onsets, cue_labels, tmin: float, tmax: float):
    """Label windows of a continuous recording from its cues, as a trained model's trials were cut.

    A cue at ``t`` labels the trial interval ``[t + tmin, t + tmax]``. A window takes the label
    of the cue whose interval overlaps it longest (the earlier cue on a tie), provided that
    overlap is at least half the trial's length; otherwise it has none. This is the rule of
    :func:`neurodecode.batch.predict_recording` (``true`` column) and of live decoding.

    Parameters
    ----------
    window_start, window_end : array-like of shape (n_windows,)
        Times of each window's first and last samples.
    cue_onsets : array-like of shape (n_cues,)
        Cue times, on the windows' clock.
    cue_labels : array-like of shape (n_cues,)
        Each cue's label (a class index or name).
    tmin, tmax : float
        The trial interval around a cue, ``tmax > tmin``.

    Returns
    -------
    labels : ndarray of object, shape (n_windows,)
        The covering cue's label, None where no cue covers half a trial.
    share : ndarray of float, shape (n_windows,)
        That cue's overlap with the window over ``tmax - tmin`` (0 without cues).
    """
    start = np.atleast_1d(np.asarray(window_start, dtype=np.float64))
    end = np.atleast_1d(np.asarray(window_end, dtype=np.float64))
    onsets = np.asarray(cue_onsets, dtype=np.float64).reshape(-1)
    cue_labels = np.asarray(cue_labels, dtype=object).reshape(-1)
    if onsets.size != cue_labels.size:
        raise ValueError(f"cue_onsets has {onsets.size} entries but cue_labels has {cue_labels.size}")
    if not tmax > tmin:
        raise ValueError(f"the trial interval must have tmax > tmin, got tmin={tmin}, tmax={tmax}")
    labels = np.full(start.shape, None, dtype=object)
    if onsets.size == 0:
        return labels, np.zeros(start.shape)
    lo = np.maximum(start[:, None], onsets[None, :] + tmin)
    hi = np.minimum(end[:, None], onsets[None, :] + tmax)
    overlap = np.clip(hi - lo, 0, None) / (tmax - tmin)  # (n_windows, n_cues)
    best = overlap.argmax(axis=1)
    share = overlap[np.arange(start.size), best]
    covered = share >= 0.5
    labels[covered] = cue_labels[best[covered]]
    return labels, share


def _window_starts(n_samples: int, n_window: int, n_step: int) -> np.ndarray:
    if n_samples < n_window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - n_window + 1, n_step, dtype=np.int64)


def _plan_windows(stream: LabelledStream, window_s: float, step_s: float) -> tuple:
    """Window length in samples, and each window's start, majority label and its share."""
    sfreq = stream.info.sfreq
    n_window, n_step = _n_samples(window_s, sfreq, "window_s"), _n_samples(step_s, sfreq, "step_s")
    starts = _window_starts(stream.n_samples, n_window, n_step)
    if starts.size == 0:
        return n_window, starts, np.zeros(0, dtype=int), np.zeros(0)
    labels, fractions = window_labels(stream.labels, starts, n_window, len(stream.info.class_names))
    return n_window, starts, labels, fractions


def iter_windows(stream: LabelledStream, window_s: float, step_s: float) -> Iterator[tuple]:
    """The windows of one stream in time order, one at a time.

    Yields
    ------
    start : int
        First sample of the window.
    window : ndarray of shape (n_channels, n_window)
        A view of the filtered signal (copy it to keep it).
    label : int
        Majority class (see :func:`window_labels`), -1 if unlabelled samples win.
    fraction : float
        Share of the window that belongs to ``label``.
    """
    n_window, starts, labels, fractions = _plan_windows(stream, window_s, step_s)
    for start, label, fraction in zip(starts, labels, fractions):
        yield int(start), stream.signal[:, start:start + n_window], int(label), float(fraction)


def _as_streams(streams) -> list:
    streams = [streams] if isinstance(streams, LabelledStream) else list(streams)
    if not streams:
        raise EmptySelectionError("no stream given")
    first = streams[0].info
    for s in streams[1:]:
        if (s.info.sfreq, s.info.ch_names, s.info.class_names) != (first.sfreq, first.ch_names, first.class_names):
            raise InvalidDataError("streams differ in sampling rate, channels or class names: "
                                   f"{first.sfreq} Hz / {len(first.ch_names)} ch / {first.class_names} vs "
                                   f"{s.info.sfreq} Hz / {len(s.info.ch_names)} ch / {s.info.class_names}")
    return streams


def _drop_class(data: DecodingData, name: str) -> DecodingData:
    """Remove a class from ``class_names`` and renumber the labels of the remaining trials."""
    names = data.info.class_names
    keep = [c for c in names if c != name]
    remap = np.array([keep.index(c) if c in keep else -1 for c in names], dtype=np.int64)
    return DecodingData(data.X, remap[data.y], data.metadata, replace(data.info, class_names=tuple(keep)))


def sliding_windows(streams, window_s: float = 1.0, step_s: float = 0.125, *, keep_idle: bool = True,
                    idle: str = IDLE) -> DecodingData:
    """Overlapping windows of one or several streams, each labelled by its majority class.

    Parameters
    ----------
    streams : LabelledStream or list of LabelledStream
    window_s, step_s : float
        Window length and step in seconds (whole numbers of samples).
    keep_idle : bool
        True (default): windows whose majority is the idle class are kept, labelled ``idle``.
        False: they are dropped and ``idle`` leaves ``class_names``, reproducing MOABB 1.7's
        ``overlap=`` windows (which only keep the paradigm's task events).
    idle : str
        Name of the idle class.

    Returns
    -------
    windows : DecodingData
        ``X`` of shape (n_windows, n_channels, n_window); windows in time order per stream.
        Metadata: ``subject``, ``session``, ``run``, ``dataset`` and the stream's extras;
        ``onset`` (window start, s from the start of the run), ``end`` (``onset`` +
        ``window_s``: the first sample *after* the window), ``majority_fraction``,
        ``sample`` (first sample index).
    """
    parts = []
    for stream in _as_streams(streams):
        sfreq = stream.info.sfreq
        n_window, starts, labels, fractions = _plan_windows(stream, window_s, step_s)
        if starts.size == 0:
            continue
        keep = labels >= 0
        starts, labels, fractions = starts[keep], labels[keep], fractions[keep]
        view = np.lib.stride_tricks.sliding_window_view(stream.signal, n_window, axis=1)
        X = np.ascontiguousarray(view[:, starts].transpose(1, 0, 2))
        meta = pd.DataFrame({**stream.metadata, "onset": starts / sfreq, "end": (starts + n_window) / sfreq,
                             "majority_fraction": fractions, "sample": starts}, index=range(starts.size))
        parts.append(DecodingData(X, labels, meta, stream.info))
    if not parts:
        raise EmptySelectionError(f"every stream is shorter than one {window_s} s window")
    data = DecodingData.concatenate(parts)
    if not keep_idle:
        if idle not in data.info.class_names:
            raise InvalidDataError(f"no idle class {idle!r} among {list(data.info.class_names)}")
        data = _drop_class(data.select(classes=[c for c in data.info.class_names if c != idle]), idle)
    return data


def cue_epochs(streams, tmin: float = 0.0, tmax: float = 3.0, *, keep_idle: bool = True,
               idle: str = IDLE) -> DecodingData:
    """Cue-locked epochs cut from the causally filtered streams.

    Each annotation kept by the stream gives one epoch ``[onset + tmin, onset + tmax)``
    (``round((tmax - tmin) * sfreq)`` samples), labelled by the annotation's class; idle
    annotations (eegmmidb's rest) give idle epochs. Epochs running past either end of the
    recording are dropped.

    Parameters
    ----------
    streams : LabelledStream or list of LabelledStream
    tmin, tmax : float
        Epoch limits in seconds relative to each cue.
    keep_idle : bool
        Keep the idle epochs (default) or drop them and the idle class.
    idle : str
        Name of the idle class.

    Returns
    -------
    epochs : DecodingData
        ``X`` of shape (n_epochs, n_channels, n_times); metadata as :func:`sliding_windows`
        (``onset`` = epoch start, ``end`` = first sample after it, ``majority_fraction`` =
        share of the epoch inside its own annotation).
    """
    parts = []
    for stream in _as_streams(streams):
        sfreq = stream.info.sfreq
        if not tmax > tmin:
            raise InvalidDataError(f"tmax={tmax} must be greater than tmin={tmin}")
        n_times = int(round((tmax - tmin) * sfreq))
        starts = stream.cues["sample"].to_numpy() + int(round(tmin * sfreq))
        keep = (starts >= 0) & (starts + n_times <= stream.n_samples)
        if not keep.any():
            continue
        starts, labels = starts[keep], stream.cues["label"].to_numpy()[keep]
        inside = np.minimum(stream.cues["n_samples"].to_numpy()[keep] - int(round(tmin * sfreq)), n_times)
        X = np.stack([stream.signal[:, s:s + n_times] for s in starts])
        meta = pd.DataFrame({**stream.metadata, "onset": starts / sfreq, "end": (starts + n_times) / sfreq,
                             "majority_fraction": np.clip(inside, 0, None) / n_times, "sample": starts},
                            index=range(starts.size))
        parts.append(DecodingData(X, labels, meta, replace(stream.info, tmin=float(tmin))))
    if not parts:
        raise EmptySelectionError(f"no cue has a whole [{tmin}, {tmax}] s epoch inside its recording")
    data = DecodingData.concatenate(parts)
    if not keep_idle:
        data = _drop_class(data.select(classes=[c for c in data.info.class_names if c != idle]), idle)
    return data


__all__ = ["IDLE", "CausalBandpass", "LabelledStream", "stream_from_raw",
           "window_labels", "cue_window_labels", "iter_windows", "sliding_windows", "cue_epochs"]
