"""One generic path from any dataset to decoding data: continuous recordings with class-named cues.

Every EEG/MEG dataset, whatever its origin (a package card, a user's card, a BIDS folder, a MOABB
class), is seen by the rest of neurodecode as a :class:`Dataset`: a list of subjects, and for each
subject its continuous :class:`Recording` objects, each read as an MNE ``Raw`` whose annotations
name the task classes. From that one shape come

* :meth:`Dataset.load`: cue-locked epochs as :class:`~neurodecode.data.DecodingData`;
* :meth:`Dataset.streams`: causally filtered labelled streams for pseudo-online evaluation, the
  idle class taken from the recording's rest annotations or, where there are none, from the gap
  between the end of a task interval and the next cue;
* the benchmark, which hands the same recordings to MOABB's paradigms.

What a dataset means for decoding (paradigm family, classes, trial interval, band) is its
:class:`Paradigm`, read from the ``[paradigm]`` table of its card. No code outside
``neurodecode.data.datasets`` knows any dataset by name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from .container import DecodingData
from .errors import EmptySelectionError, InvalidDataError
from .stream import IDLE

#: MOABB's paradigm families; a card's ``[paradigm] name`` is one of them.
PARADIGM_KINDS = ("imagery", "ssvep", "p300")


@dataclass(frozen=True)
class Paradigm:
    """What a dataset's cues mean for decoding.

    Parameters
    ----------
    kind : {"imagery", "ssvep", "p300"}
        Paradigm family (MOABB's names).
    classes : tuple of str
        Task classes, in label order (label ``k`` is ``classes[k]``).
    interval : tuple of float
        Trial window ``(tmin, tmax)`` in seconds after each cue.
    band : tuple of float or None
        Default band-pass ``(fmin, fmax)`` in Hz for epochs and streams; None: no filter.
    idle : str or None
        Annotation that marks rest between cues (pseudo-online idle class); None: idle is the
        gap from the end of one task interval to the next cue.
    """

    kind: str
    classes: tuple
    interval: tuple = (0.0, 3.0)
    band: tuple | None = None
    idle: str | None = None

    def __post_init__(self):
        if self.kind not in PARADIGM_KINDS:
            raise InvalidDataError(f"paradigm {self.kind!r} is not one of {list(PARADIGM_KINDS)}")
        if len(self.classes) < 2:
            raise InvalidDataError(f"a paradigm needs at least two classes; got {list(self.classes)}")
        if not self.interval[0] < self.interval[1]:
            raise InvalidDataError(f"paradigm interval {list(self.interval)} must have tmin < tmax")

    @classmethod
    def from_table(cls, table: dict, *, where: str) -> "Paradigm":
        """Build from a card's ``[paradigm]`` table (``name``, ``classes``, ``interval``, ``band``, ``idle``)."""
        try:
            kind, classes = table["name"], tuple(table["classes"])
        except KeyError as err:
            raise InvalidDataError(f"{where}: the [paradigm] table lacks {err}; it needs name and classes") from None
        band = table.get("band")
        return cls(kind=str(kind), classes=classes, interval=tuple(float(t) for t in table.get("interval", (0.0, 3.0))),
                   band=None if band is None else tuple(float(b) for b in band), idle=table.get("idle"))


@dataclass(frozen=True)
class Recording:
    """One continuous recording of a subject.

    ``read()`` returns a preloaded ``mne.io.Raw`` in SI units (volts for EEG) with channel
    positions when known, whose annotations name the dataset's classes (and its idle marker).
    ``key`` identifies the file content (e.g. its sha256) for result keys. ``source``, when
    given (e.g. the file's path in the dataset folder), names the recording in load failures
    instead of its subject, session and run.
    """

    subject: int
    session: str
    run: str
    read: Callable = field(compare=False, repr=False)
    key: str = ""
    extra: dict = field(default_factory=dict, compare=False)
    source: str = field(default="", compare=False)


class Dataset:
    """Base class: a named set of subjects' continuous recordings with a paradigm.

    Subclasses implement :meth:`subjects` and :meth:`recordings`, and :meth:`listed_subjects`
    when the dataset names subjects whose files may be absent.

    Parameters
    ----------
    name : str
        The name used on the command line and written into results and metadata.
    paradigm : Paradigm
    modality : str
        ``"eeg"`` or ``"meg"``.
    picks : str or list
        Channels kept in epochs and streams (MNE picks).
    """

    def __init__(self, name: str, paradigm: Paradigm, *, modality: str = "eeg", picks="eeg"):
        self.name, self.paradigm, self.modality, self.picks = name, paradigm, modality, picks

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.paradigm.kind}, classes {list(self.paradigm.classes)}>"

    # -- what subclasses provide ---------------------------------------------------------------
    def subjects(self) -> tuple:
        """Subjects whose recordings are present."""
        raise NotImplementedError

    def recordings(self, subject) -> list:
        """The subject's :class:`Recording` objects, in time order."""
        raise NotImplementedError

    def listed_subjects(self) -> tuple:
        """Every subject the dataset names, its files present or not (default: :meth:`subjects`).

        A listed subject may be asked for by number although some of its files are absent: each
        missing file then fails when read, named in the load's failures, and the others load.
        """
        return self.subjects()

    # -- generic -------------------------------------------------------------------------------
    def n_sessions(self, subjects=None) -> int:
        """Most sessions any of the subjects has (cross-session evaluation needs two)."""
        return max(len({r.session for r in self.recordings(s)}) for s in self.select_subjects(subjects))

    def select_subjects(self, subjects=None) -> list:
        """The subjects asked for, checked against those listed (None: all those present)."""
        available = list(self.subjects())
        if subjects is None:
            if not available:
                raise EmptySelectionError(f"dataset {self.name!r}: no subject's recordings are present")
            return available
        wanted = [subjects] if np.isscalar(subjects) else list(subjects)
        listed = set(self.listed_subjects())
        missing = [s for s in wanted if s not in available and s not in listed]
        if missing or not wanted:
            raise EmptySelectionError(
                f"dataset {self.name!r}: subject(s) {missing or wanted} not present; present: {_short(available)}")
        return wanted

    def fingerprint(self, subjects=None) -> str:
        """A short hash of the dataset's identity, paradigm and files (for result keys)."""
        parts = [self.name, repr(self.paradigm)]
        for subject in self.select_subjects(subjects):
            parts += [f"{subject}/{r.session}/{r.run}:{r.key}" for r in self.recordings(subject)]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    def _filtered(self, recording: Recording, fmin, fmax, method: str = "iir"):
        raw = recording.read()
        if fmin is not None or fmax is not None:
            # On the continuous run, before epoching, so trials have no edge effects (MOABB's IIR by default).
            raw.filter(fmin, fmax, method=method, picks="data", verbose="error")
        return raw

    def load(self, subjects=None, *, classes: Sequence[str] | None = None, tmin: float | None = None,
             tmax: float | None = None, fmin: float | None | str = "paradigm", fmax: float | None | str = "paradigm",
             resample: float | None = None, filter_method: str = "iir", unit: str | None = None,
             on_error: str = "raise", progress: bool | None = None) -> DecodingData:
        """Cue-locked epochs of the chosen subjects.

        Parameters
        ----------
        subjects : int, list of int or None
            None: every subject present.
        classes : list of str or None
            Classes to keep, in label order; default: the paradigm's.
        tmin, tmax : float or None
            Epoch window in seconds after each cue; default: the paradigm's interval.
        fmin, fmax : float, None or "paradigm"
            Band-pass of each continuous recording (zero-phase, see ``filter_method``);
            "paradigm": the paradigm's band; None: that edge open.
        resample : float or None
            New sampling rate of the epochs, in Hz.
        filter_method : {"iir", "fir"}
            ``"iir"``: MNE's 4th-order Butterworth, forward-backward (MOABB's filter); ``"fir"``:
            MNE's default FIR design.
        unit : {None, "uV", "SI"}
            Unit of ``X``: None, the modality's default (microvolts for EEG, SI for MEG);
            ``"SI"``: as read (volts for EEG); ``"uV"``: microvolts (EEG only).
        on_error : {"raise", "skip"}
            See :func:`~neurodecode.data.io.recordings.load_many`.
        progress : bool or None
            Progress bar over recordings.

        Returns
        -------
        data : DecodingData
            ``X`` of shape (n_trials, n_channels, n_times), by default in microvolts for EEG
            (volts times 1e6, MOABB's unit), tesla or T/m for MEG; metadata ``subject``, ``session``,
            ``run``, ``onset``, ``dataset`` and any per-recording extras.
        """
        import mne

        from .io.recordings import epochs_to_data, load_many

        class_names = tuple(classes) if classes is not None else self.paradigm.classes
        unknown = [c for c in class_names if c not in self.paradigm.classes]
        if unknown:
            raise InvalidDataError(f"dataset {self.name!r}: classes {unknown} are not among "
                                   f"{list(self.paradigm.classes)}")
        t0 = self.paradigm.interval[0] if tmin is None else tmin
        t1 = self.paradigm.interval[1] if tmax is None else tmax
        band = self.paradigm.band or (None, None)
        fmin = band[0] if fmin == "paradigm" else fmin
        fmax = band[1] if fmax == "paradigm" else fmax
        if filter_method not in ("iir", "fir"):
            raise InvalidDataError(f"dataset {self.name!r}: filter_method must be 'iir' or 'fir', "
                                   f"got {filter_method!r}")
        units = ("uV", "SI") if self.modality == "eeg" else ("SI",)
        unit = units[0] if unit is None else unit
        if unit not in units:
            raise InvalidDataError(f"dataset {self.name!r}: unit must be one of {list(units)} for "
                                   f"{self.modality}, got {unit!r}")
        items = [(s, r) for s in self.select_subjects(subjects) for r in self.recordings(s)]
        scale = 1e6 if unit == "uV" else 1.0

        def load_one(item) -> DecodingData:
            subject, rec = item
            raw = self._filtered(rec, fmin, fmax, filter_method)
            present = [c for c in class_names if c in set(raw.annotations.description)]
            if not present:
                # A run of another task (e.g. feet runs when left/right is asked): skipped, as MOABB does.
                return None
            event_id = {c: i + 1 for i, c in enumerate(class_names) if c in present}
            events, _ = mne.events_from_annotations(raw, event_id=event_id, verbose="error")
            part = epochs_to_data(raw, events, event_id, tmin=t0, tmax=t1, dataset=self.name, subject=subject,
                                  session=rec.session, run=rec.run, picks=self.picks, class_names=class_names,
                                  modality=self.modality, extra_metadata=rec.extra)
            X, info = part.X, part.info
            if resample is not None and resample != info.sfreq:
                # Resample the epochs, not the recording, with Epochs.resample's defaults, then scale: MOABB's
                # order, so that the samples equal MOABB's bit for bit.
                X = mne.filter.resample(X, float(resample), info.sfreq, npad="auto", window="auto", pad="edge",
                                        method="fft", verbose="error")
                info = replace(info, sfreq=float(resample))
            return DecodingData(X * scale if scale != 1.0 else X, part.y, part.metadata, replace(info, unit=unit))

        data = load_many(_Items(items), load_one, on_error=on_error, desc=self.name, progress=progress)
        if data is None:
            raise EmptySelectionError(f"dataset {self.name!r}: none of the classes {list(class_names)} is annotated "
                                      f"in the recordings of subject(s) {sorted({s for s, _ in items})}")
        return data

    def streams(self, subjects=None, *, fmin: float | None | str = "paradigm", fmax: float | None | str = "paradigm",
                order: int = 4) -> list:
        """Every recording of the subjects as a causally filtered :class:`~neurodecode.data.stream.LabelledStream`.

        Classes are the paradigm's, then ``"idle"``: the samples the ``idle`` annotation covers,
        or, when the paradigm names none, from the end of each task interval to the next cue.
        Task classes cover each cue's annotated duration (or the paradigm's interval when the
        annotation has no duration).

        Returns
        -------
        streams : list of LabelledStream
            One per recording, by subject then time.
        """
        from .stream import stream_from_raw

        band = self.paradigm.band or (None, None)
        fmin = band[0] if fmin == "paradigm" else fmin
        fmax = band[1] if fmax == "paradigm" else fmax
        classes = {c: c for c in self.paradigm.classes}
        out = []
        for subject in self.select_subjects(subjects):
            for rec in self.recordings(subject):
                raw = rec.read()
                _label_idle(raw, self.paradigm)
                out.append(stream_from_raw(raw, {**classes, _IDLE_ANNOTATION: IDLE},
                                           class_names=(*self.paradigm.classes, IDLE), fmin=fmin, fmax=fmax,
                                           order=order, picks=self.picks, scale=1e6 if self.modality == "eeg" else 1.0,
                                           unit="uV" if self.modality == "eeg" else "SI", dataset=self.name,
                                           subject=subject, session=rec.session, run=rec.run, extra_metadata=rec.extra))
        return out


class _Items(list):
    """Recording items that print as their source, or as ``subject 3, session 0, run 1``, in load errors."""

    def __iter__(self):
        return (_Item(x) for x in list.__iter__(self))


class _Item(tuple):
    def __new__(cls, item):
        return super().__new__(cls, item)

    def __str__(self):
        subject, rec = self
        return rec.source or f"subject {subject}, session {rec.session}, run {rec.run}"


_IDLE_ANNOTATION = "__neurodecode_idle__"


def _label_idle(raw, paradigm: Paradigm) -> None:
    """Add idle annotations to ``raw``: the paradigm's rest marker, or the gaps between trials."""
    ann = raw.annotations
    if paradigm.idle is not None:
        keep = ann.description == paradigm.idle
        if keep.any():
            raw.annotations.append(ann.onset[keep], ann.duration[keep], [_IDLE_ANNOTATION] * int(keep.sum()))
            return
    cues = np.isin(ann.description, paradigm.classes)
    onsets = np.sort(ann.onset[cues])
    if not len(onsets):
        return
    end_of_trial = onsets + paradigm.interval[1]
    next_cue = np.append(onsets[1:], raw.times[-1] + (raw.first_time if ann.orig_time is not None else 0.0))
    gap = next_cue - end_of_trial
    ok = gap > 0
    # Task annotations with no duration cover the paradigm's interval, so idle starts where they end.
    zero = cues & (ann.duration == 0)
    if zero.any():
        ann.duration[zero] = paradigm.interval[1]
    if ok.any():
        raw.annotations.append(end_of_trial[ok], gap[ok], [_IDLE_ANNOTATION] * int(ok.sum()))


def _short(items: list) -> str:
    return str(items) if len(items) <= 12 else f"{items[:10]}... ({len(items)} in all)"


__all__ = ["IDLE", "PARADIGM_KINDS", "Dataset", "Paradigm", "Recording"]
